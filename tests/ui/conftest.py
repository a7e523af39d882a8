"""The UI in a real browser: the app served in-process on 127.0.0.1, Debian's headless Chromium.

Models are made tiny through the UI's own recipe-file field (the same YAML override as the
CLI's ``--config``), or trained directly with the training API when a test only needs one.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect

from distillgan.audio import SAMPLE_RATE, write_audio
from distillgan.corpus import load_corpus
from distillgan.examples import synth_bell, synth_pluck, synth_tone
from distillgan.modelfile import ModelLock
from distillgan.recipes import load_vae_config, load_vocoder_config
from distillgan.training import train_vae, train_vocoder
from distillgan.ui.train_tab import NEW_LABEL
from distillgan.vocoders.bigvgan_weights import LOCAL_DIR_ENV  # imports huggingface_hub before HF_* change

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"  # shown in the README

TINY_VAE = {
    "model": {"latent_dim": 4, "channels": [16, 16], "kernel_size": 3},
    "train": {"chunk_frames": 16, "batch_size": 4, "lr": 0.003, "kl_warmup_steps": 0, "epochs": 3},
}
TINY_VOCODER = {
    "generator": {
        "upsample_initial_channel": 16,
        "resblock_kernel_sizes": [3],
        "resblock_dilations": [[1]],
        "mpd_periods": [2, 3],
        "discriminator_channel_divisor": 16,
    },
    "train": {
        "init": "scratch",  # a tiny generator: not the prior's shape
        "segment_samples": 2048,
        "batch_size": 2,
        "epochs": 4,
        "val_clips": 1,
        "val_clip_seconds": 0.25,
        "checkpoint_interval": 1,
        "preview_interval": 1,
    },
}
# NVIDIA's config.json layout, for a BigVGAN small enough to build in a test
TINY_BIGVGAN = {
    "resblock": "1",
    "upsample_rates": [8, 8, 8],
    "upsample_kernel_sizes": [16, 16, 16],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3, 7],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
    "use_tanh_at_final": False,
    "use_bias_at_final": False,
    "activation": "snakebeta",
    "snake_logscale": True,
    "num_mels": 128,
    "n_fft": 2048,
    "hop_size": 512,
    "win_size": 2048,
    "sampling_rate": 44100,
    "fmin": 0,
    "fmax": None,
}


@dataclass
class Served:
    url: str
    models_dir: Path
    app: object


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ui_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="session", autouse=True)
def private_hub(ui_root: Path) -> Iterator[None]:
    """The real Hugging Face hub is never asked (the Generate tab checks whether BigVGAN-v2 can
    be had): an empty hub cache of the session's own, offline, no BigVGAN folder from the
    environment. A test that needs a hub serves one on loopback (``loopback_hub``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(ui_root / "hf"))
        patch.setenv("HF_HUB_CACHE", str(ui_root / "hf" / "hub"))
        patch.delenv(LOCAL_DIR_ENV, raising=False)
        yield


@pytest.fixture(scope="session")
def corpus(ui_root: Path) -> Path:
    """Three short synthesized sounds: a vocoder epoch takes about a second on two cores."""
    folder = ui_root / "corpus"
    folder.mkdir()
    write_audio(folder / "pluck.wav", synth_pluck(0.6, seed=1, freq=196.0), SAMPLE_RATE)
    write_audio(folder / "bell.wav", synth_bell(0.6, seed=2, freq=523.0), SAMPLE_RATE)
    write_audio(folder / "tone.wav", synth_tone(0.6, seed=4, freq=110.0), SAMPLE_RATE)
    return folder


@pytest.fixture(scope="session")
def recipes(ui_root: Path) -> dict[str, Path]:
    """Tiny VAE and vocoder recipe files, typed into the UI's "Recipe file" fields."""
    out = {}
    for name, recipe in (("vae", TINY_VAE), ("vocoder", TINY_VOCODER)):
        out[name] = ui_root / f"{name}_tiny.yaml"
        out[name].write_text(yaml.safe_dump(recipe))
    return out


@pytest.fixture(scope="session")
def served(ui_root: Path) -> Iterator[Served]:
    from distillgan.ui.app import build_app

    app = build_app(ui_root / "models", poll_s=0.5)
    url = app.launch("127.0.0.1", free_port())
    yield Served(url, app.models_dir, app)
    app.close(timeout=60)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: object, served: Served) -> Iterator[Callable[[], object]]:
    """Opens the app in a fresh browser tab; the tabs are closed after the test."""
    contexts = []

    def open_() -> object:
        context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(served.url)
        # the page has loaded: its load event filled the model summary (not just a progress timer)
        page.wait_for_function(
            "() => document.querySelector('#train-summary [data-testid=markdown]')?.innerText.trim()"
        )
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Callable[[], object]) -> object:
    return open_page()


def _train_vae(path: Path, corpus_dir: Path) -> None:
    with ModelLock(path, owner="test") as lock:
        train_vae(
            load_corpus(corpus_dir),
            path,
            load_vae_config(None, {**TINY_VAE, "train": {**TINY_VAE["train"], "accelerator": "cpu"}}),
            lock=lock,
        )


@pytest.fixture(scope="session")
def trained_vae(ui_root: Path, corpus: Path) -> Path:
    """A tiny VAE trained once, outside the models folder: the tests' models are copies of it."""
    path = ui_root / "trained-vae.distillgan"
    _train_vae(path, corpus)
    return path


@pytest.fixture
def vae_model(served: Served, trained_vae: Path, request: pytest.FixtureRequest) -> Path:
    """A model with a trained tiny VAE and no vocoder, named after the test."""
    path = served.models_dir / f"{request.node.name.replace('_', '-')[:60]}.distillgan"
    shutil.copyfile(trained_vae, path)
    return path


@pytest.fixture(scope="session")
def voiced_model(served: Served, corpus: Path, trained_vae: Path) -> Path:
    """A model with a tiny VAE and a complete tiny per-model vocoder."""
    path = served.models_dir / "voiced.distillgan"
    shutil.copyfile(trained_vae, path)
    train_per_model_vocoder(path, corpus, epochs=1)
    return path


def train_per_model_vocoder(
    path: Path, corpus_dir: Path, *, epochs: int, train: dict[str, object] | None = None
) -> None:
    """The tiny vocoder recipe, its ``train:`` keys overridden by ``train``."""
    train = {**TINY_VOCODER["train"], **(train or {}), "accelerator": "cpu"}
    cfg = load_vocoder_config(None, {**TINY_VOCODER, "train": train})
    with ModelLock(path, owner="test") as lock:
        train_vocoder(
            load_corpus(corpus_dir),
            path,
            cfg,
            lock=lock,
            epochs=epochs,
        )


@contextlib.contextmanager
def loopback_hub(folder: Path, *, body_delay_s: float) -> Iterator[str]:
    """Serves ``folder``'s BigVGAN files the way the Hugging Face hub does (HEAD/GET under
    ``/<repo>/resolve/main/``), waiting ``body_delay_s`` before each body so a download is
    slow enough to watch. Yields the endpoint URL."""
    from distillgan.vocoders.bigvgan_weights import REPO_ID

    files = {path.name: path.read_bytes() for path in folder.iterdir()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def headers_for(self) -> bytes | None:
            name = self.path.rsplit("/", 1)[-1]
            if f"/{REPO_ID}/resolve/main/" not in self.path or name not in files:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(200)
            self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
            self.send_header("ETag", f'"{hashlib.sha256(files[name]).hexdigest()}"')
            self.send_header("Content-Length", str(len(files[name])))
            self.end_headers()
            return files[name]

        def do_HEAD(self) -> None:
            self.headers_for()

        def do_GET(self) -> None:
            body = self.headers_for()
            if body is not None:
                time.sleep(body_delay_s)
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def write_tiny_bigvgan(folder: Path) -> Path:
    """config.json and bigvgan_generator.pt as NVIDIA publishes them, for a tiny generator."""
    import torch
    from torch import nn

    from distillgan.networks.bigvgan import BigVGAN, BigVGANConfig

    model = BigVGAN(BigVGANConfig.from_dict(TINY_BIGVGAN))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # NVIDIA's files use the old weight_norm keys
        for module in list(model.modules()):
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
                torch.nn.utils.weight_norm(module)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": model.state_dict()}, folder / "bigvgan_generator.pt")
    (folder / "config.json").write_text(json.dumps(TINY_BIGVGAN))
    return folder


# ------------------------------------------------------------------ page helpers


def field(page: object, elem_id: str) -> object:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first  # type: ignore[attr-defined]


def choose(page: object, elem_id: str, option: str) -> None:
    """Pick ``option`` in the Gradio dropdown ``elem_id``."""
    field(page, elem_id).click()  # type: ignore[attr-defined]
    page.get_by_role("option", name=option, exact=True).click()  # type: ignore[attr-defined]
    if elem_id == "train-model":
        # the selection's render refills the forms: text typed before it lands would be replaced
        shown = "A new model learns from a folder" if option == NEW_LABEL else option
        expect(page.locator("#train-summary")).to_contain_text(shown)  # type: ignore[attr-defined]


def markdown(page: object, elem_id: str) -> object:
    """The Markdown ``elem_id``'s own text: a pending event shows Gradio's status (e.g. "0.2s",
    "processing") inside the component, beside it."""
    return page.locator(f"#{elem_id} [data-testid=markdown]")  # type: ignore[attr-defined]


def open_advanced(page: object, section: str) -> None:
    """Open the section's "Advanced" accordion, ready for typing. Gradio mounts an accordion's
    fields only when it opens: text filled in the same instant can reach the page before the
    field is bound to the form's value, which then starts the run without it."""
    page.locator(f"#{section}-section").get_by_text("Advanced").click()  # type: ignore[attr-defined]
    expect(field(page, f"{section}-recipe-file")).to_be_visible()  # type: ignore[arg-type]
    # two animation frames: the mounted fields' effects (their bindings) have run
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")  # type: ignore[attr-defined]


def full_page_screenshot(page: object, name: str, *, charts: tuple[str, ...] = ()) -> Path:
    """A screenshot of the whole page into docs/screenshots/. The viewport is grown to the
    page first (a full-page capture that resizes it catches the charts mid-redraw)."""
    height = page.evaluate("() => document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1280, "height": height})  # type: ignore[attr-defined]
    for chart in charts:
        wait_for_line(page, chart)
    page.wait_for_timeout(300)  # type: ignore[attr-defined]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path


def wait_for_line(page: object, elem_id: str, points: int = 3) -> None:
    """Until the chart ``elem_id`` draws a line through at least ``points`` points."""
    page.wait_for_function(  # type: ignore[attr-defined]
        f"""() => [...document.querySelectorAll('#{elem_id} svg g.mark-line path')]
            .some(p => (p.getAttribute('d') || '').split('L').length >= {points})""",
        timeout=30_000,
    )
