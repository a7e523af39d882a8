"""Locating, downloading and loading BigVGAN-v2 weights, without ever reaching the real hub.

The files are made the way NVIDIA's are (config.json with training keys, and
``torch.save({"generator": state_dict})`` of a weight-normed generator) for a tiny network.
Downloads are served by a loopback HTTP server speaking the hub's HEAD/GET protocol.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from distillgan.errors import VocoderUnavailableError
from distillgan.networks.bigvgan import BigVGAN, BigVGANConfig
from distillgan.vocoders import bigvgan_weights
from distillgan.vocoders.bigvgan_weights import (
    FOLDER_FIELD,
    LOCAL_DIR_ENV,
    REPO_ID,
    BigVGANUnavailableError,
    bigvgan_availability,
    load_bigvgan,
    locate_bigvgan_files,
    worded,
)
from tests.vocoders.model_files import HUB_COMMIT as COMMIT
from tests.vocoders.model_files import TINY_BIGVGAN_CONFIG as TINY_CONFIG
from tests.vocoders.model_files import nvidia_files, serve_hub, write_folder, write_hub_cache

# NVIDIA's files were written with the old weight_norm API, so the tests use it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")


@pytest.fixture(autouse=True)
def one_thread_no_denormals() -> Iterator[None]:
    """Tiny random networks spend most of their time on denormal floats and thread hand-offs:
    one thread that flushes denormals runs these tests several times faster, same results."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty, offline hub cache under tmp; returns the cache directory."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(LOCAL_DIR_ENV, raising=False)
    (tmp_path / "hf" / "hub").mkdir(parents=True)
    bigvgan_weights._load_cached.cache_clear()
    bigvgan_weights._hub_checks.clear()
    yield tmp_path / "hf" / "hub"
    bigvgan_weights._load_cached.cache_clear()
    bigvgan_weights._hub_checks.clear()


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, hub: Path) -> Iterator[dict]:
    """A loopback server answering the hub's HEAD/GET for our repo; the hub is no longer 'offline'."""
    files = nvidia_files()
    with serve_hub(files) as (endpoint, requested):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE")
        yield {"requested": requested, **files}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_loads_from_the_hub_cache_while_offline(hub: Path) -> None:
    snapshot = write_hub_cache(hub, nvidia_files())
    config_path, weights_path = locate_bigvgan_files()
    assert (config_path, weights_path) == (snapshot / "config.json", snapshot / "bigvgan_generator.pt")
    model = load_bigvgan()
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert "conv_pre.weight" in model.state_dict()  # weight norm folded away


def test_output_of_a_loaded_model(hub: Path) -> None:
    write_hub_cache(hub, nvidia_files())
    audio = load_bigvgan().synthesize(torch.randn(2, 128, 6))
    assert audio.shape == (2, 1, 6 * 512)
    assert torch.isfinite(audio).all() and audio.abs().max() <= 1.0


def test_loaded_weights_equal_the_saved_generator(hub: Path, tmp_path: Path) -> None:
    files = nvidia_files()
    folder = write_folder(tmp_path / "bigvgan", files)
    state = torch.load(folder / "bigvgan_generator.pt", weights_only=True)["generator"]
    assert "conv_pre.weight_g" in state and "resblocks.0.convs1.0.weight_v" in state
    reference = BigVGAN(BigVGANConfig.from_dict(TINY_CONFIG))
    reference.load_nvidia_state_dict(state)
    mel = torch.randn(1, 128, 4)
    assert torch.equal(load_bigvgan(folder).synthesize(mel), reference.synthesize(mel))


def test_local_dir_argument_and_environment_variable(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_folder(tmp_path / "my weights", nvidia_files())
    assert locate_bigvgan_files(folder) == (folder / "config.json", folder / "bigvgan_generator.pt")
    assert load_bigvgan(str(folder)).cfg.upsample_initial_channel == 32
    monkeypatch.setenv(LOCAL_DIR_ENV, str(folder))
    assert locate_bigvgan_files() == (folder / "config.json", folder / "bigvgan_generator.pt")


def test_local_dir_problems_are_one_clear_line(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(VocoderUnavailableError, match="does not exist") as missing_dir:
        locate_bigvgan_files(tmp_path / "nowhere")
    folder = write_folder(tmp_path / "half", {"config.json": b"{}"})
    monkeypatch.setenv(LOCAL_DIR_ENV, str(folder))
    with pytest.raises(VocoderUnavailableError, match=f"from {LOCAL_DIR_ENV}.*lacks bigvgan_generator.pt"):
        locate_bigvgan_files()
    assert "\n" not in str(missing_dir.value)


def test_not_cached_and_offline_says_what_to_do(hub: Path) -> None:
    with pytest.raises(VocoderUnavailableError) as error:
        load_bigvgan()
    message = str(error.value)
    assert "\n" not in message
    assert "not cached" in message and "HF_HUB_OFFLINE" in message
    assert f"https://huggingface.co/{REPO_ID}" in message
    assert "--bigvgan-dir" in message and LOCAL_DIR_ENV in message


def test_not_cached_and_hub_unreachable_fails_fast(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(VocoderUnavailableError, match="hub is unreachable; connect once") as error:
        locate_bigvgan_files()
    assert time.monotonic() - start < 5
    assert "--bigvgan-dir" in str(error.value)


def test_download_disallowed_never_touches_the_network(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(VocoderUnavailableError, match="not downloaded yet"):
        locate_bigvgan_files(allow_download=False)


def test_download_reports_progress_then_serves_from_cache(
    fake_hub: dict, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[tuple[str, int, int]] = []
    model = load_bigvgan(progress=lambda name, done, total: reports.append((name, done, total)))
    assert model.cfg.num_mels == 128
    assert set(fake_hub["requested"]) == {"config.json", "bigvgan_generator.pt"}
    size = len(fake_hub["bigvgan_generator.pt"])
    weight_reports = [r for r in reports if r[0] == "bigvgan_generator.pt"]
    assert weight_reports[-1] == ("bigvgan_generator.pt", size, size)
    assert [done for _, done, _ in weight_reports] == sorted(done for _, done, _ in weight_reports)
    assert (hub / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT / "config.json").is_file()

    # Now offline: the cache answers, and the in-process cache returns the very same model.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub["requested"].clear()
    assert load_bigvgan() is model
    assert fake_hub["requested"] == []


def test_in_process_cache_is_per_file_version_and_device(hub: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "bigvgan", nvidia_files())
    first = load_bigvgan(folder)
    assert load_bigvgan(folder) is first
    assert load_bigvgan(folder, device=torch.device("cpu")) is first
    weights = folder / "bigvgan_generator.pt"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    assert load_bigvgan(folder) is not first


def test_checkpoint_with_pickled_code_is_refused(hub: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "evil", nvidia_files())
    torch.save(
        {"generator": {"conv_pre.weight": torch.zeros(1)}, "payload": HostileObject()},
        folder / "bigvgan_generator.pt",
    )
    with pytest.raises(VocoderUnavailableError, match="cannot read BigVGAN-v2 weights") as error:
        load_bigvgan(folder)
    assert "\n" not in str(error.value)


class HostileObject:
    """Any non-tensor class: weights_only loading must refuse to import and build it."""


def test_weights_not_matching_config_are_reported(hub: Path, tmp_path: Path) -> None:
    files = nvidia_files()
    files["config.json"] = json.dumps({**TINY_CONFIG, "resblock_kernel_sizes": [3, 5]}).encode()
    with pytest.raises(VocoderUnavailableError, match="do not match"):
        load_bigvgan(write_folder(tmp_path / "mixed", files))


def test_a_bigvgan_for_another_mel_is_rejected(hub: Path, tmp_path: Path) -> None:
    config = {**TINY_CONFIG, "num_mels": 100, "sampling_rate": 24000, "hop_size": 512}
    files = nvidia_files(config)
    with pytest.raises(VocoderUnavailableError, match="100 mels at 24000 Hz"):
        load_bigvgan(write_folder(tmp_path / "24k", files))


# ---------------------------------------------------------------------------------------------
# Availability (decided without downloading) and the front ends' wording


def test_availability_from_a_folder_or_the_cache_needs_no_hub(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(endpoint: str) -> None:
        raise AssertionError(f"the hub was asked: {endpoint}")

    monkeypatch.setattr(bigvgan_weights, "check_hub", no_network)
    folder = write_folder(tmp_path / "weights", nvidia_files())
    found = bigvgan_availability(folder)
    assert (found.available, found.source, found.folder) == (True, "folder", folder)
    assert found.describe("ui") == f"BigVGAN-v2 is read from {folder}."
    missing = bigvgan_availability(tmp_path / "nowhere")
    assert not missing.available and "does not exist" in missing.describe("ui")
    monkeypatch.setenv(LOCAL_DIR_ENV, str(folder))
    assert bigvgan_availability().source == "folder"
    monkeypatch.delenv(LOCAL_DIR_ENV)
    assert bigvgan_availability().source is None  # offline, empty cache
    write_hub_cache(hub, nvidia_files())
    assert bigvgan_availability().source == "cache"


def test_offline_and_not_cached_is_unavailable_in_each_front_ends_words(hub: Path) -> None:
    found = bigvgan_availability()
    assert not found.available and found.source is None
    assert isinstance(found.problem, BigVGANUnavailableError)
    cli, ui = worded(found.problem, "cli"), worded(found.problem, "ui")
    assert cli == str(found.problem) and cli != ui
    for text in (cli, ui):
        assert text.startswith(
            "BigVGAN-v2 is unavailable: its weights are not cached and HF_HUB_OFFLINE is set"
        )
        assert f"https://huggingface.co/{REPO_ID}" in text and "\n" not in text
    assert "--bigvgan-dir" in cli and FOLDER_FIELD not in cli
    assert f'"{FOLDER_FIELD}"' in ui and "--bigvgan-dir" not in ui and LOCAL_DIR_ENV not in ui
    assert found.describe("ui") == ui
    # the error a load raises carries the same message, in the same words
    with pytest.raises(BigVGANUnavailableError) as error:
        load_bigvgan()
    assert error.value.worded("ui") == ui


def test_downloadable_is_one_hub_check_kept_for_a_while(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    answers: list[BigVGANUnavailableError | None] = [None]
    asked: list[str] = []

    def check(endpoint: str) -> BigVGANUnavailableError | None:
        asked.append(endpoint)
        return answers[0]

    monkeypatch.setattr(bigvgan_weights, "check_hub", check)
    found = bigvgan_availability()
    assert (found.available, found.source) == (True, "download")
    assert found.describe("cli") == "BigVGAN-v2 (~490 MB) is downloaded once, on first use."
    answers[0] = BigVGANUnavailableError("BigVGAN-v2 is unavailable: the hub is down")
    assert bigvgan_availability().available  # the answer stands for HUB_CHECK_TTL_S
    assert len(asked) == 1
    monkeypatch.setattr(bigvgan_weights, "HUB_CHECK_TTL_S", 0.0)
    assert bigvgan_availability().describe("ui").startswith("BigVGAN-v2 is unavailable: the hub is down, or ")
    assert len(asked) == 2
    # a download always asks afresh, and refuses with that answer
    monkeypatch.setattr(bigvgan_weights, "HUB_CHECK_TTL_S", 3600.0)
    with pytest.raises(BigVGANUnavailableError, match="the hub is down"):
        locate_bigvgan_files()
    assert len(asked) == 3


def test_an_unreachable_hub_is_unavailable_at_once(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    found = bigvgan_availability()
    assert time.monotonic() - start < 5
    assert not found.available and "hub is unreachable" in found.describe("ui")


def test_a_hub_that_answers_is_downloadable(fake_hub: dict) -> None:
    assert bigvgan_availability().source == "download"
    assert fake_hub["requested"] == ["config.json"]  # one HEAD request, nothing downloaded
