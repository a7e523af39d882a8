"""Hostile `.distillgan` files through the product's real load paths.

Each case takes a real model (tiny VAE, corpus manifest, a trained vocoder with its resumable
state) and plants one hostile thing in it: pickled objects (a payload that would create a marker
file when unpickled), absurd shapes, sizes declared but not stored, wrong dtypes, NaN weights,
stored configs of the wrong type or out of range, a damaged training state. Then `model info`,
`model list`, `generate`, `train vocoder` (fresh and --resume) run on it: each either works or
gives one clear `error:` line -- never a traceback, never the payload, never a huge allocation.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from distillgan.generation import load_vae
from distillgan.vocoders.hifigan import load_hifigan
from tests.address_space import address_space_limit
from tests.cli.conftest import CliResult, invoke
from tests.robustness.harness import TINY_VOCODER, make_vae_model, write_recipe, write_short_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@dataclass
class Case:
    name: str
    plant: Callable[[h5py.File, bytes], None]
    # which command must refuse the file, and a fragment of its one error line
    refused: dict[str, str] = field(default_factory=dict)


def _leaf(group: h5py.Group) -> tuple[h5py.Group, str]:
    """The first stored weight below ``group`` (sorted names)."""
    name = sorted(group)[0]
    while isinstance(group[name], h5py.Group):
        group, name = group[name], sorted(group[name])[0]
    return group, name


def replace_weight(section: str, make: Callable[[h5py.Group, str, tuple[int, ...], bytes], Any]) -> Any:
    def plant(f: h5py.File, payload: bytes) -> None:
        group, name = _leaf(f[section]["weights" if section == "vae" else "generator"])
        shape = group[name].shape
        del group[name]
        make(group, name, shape, payload)

    return plant


def edit_json(section: str, key: str, edit: Callable[[Any], Any]) -> Any:
    """Change a JSON attribute (configs are stored as JSON text inside the JSON attribute)."""

    def plant(f: h5py.File, payload: bytes) -> None:
        value = json.loads(f[section].attrs[key])
        nested = isinstance(value, str)
        value = edit(json.loads(value) if nested else value)
        f[section].attrs[key] = json.dumps(json.dumps(value) if nested else value)

    return plant


def set_item(key: str, value: Any) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        target = data
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
        return data

    return edit


def checkpoint_tensor(
    pick: Callable[[Any], str], make: Callable[[h5py.Group, str, tuple[int, ...]], Any]
) -> Any:
    """Replace one tensor of the packed Lightning checkpoint (``pick`` finds its name in the tree)."""

    def plant(f: h5py.File, payload: bytes) -> None:
        group = f["vocoder_checkpoint"]
        name = pick(json.loads(group.attrs["tree"]))
        shape = group[name].shape
        del group[name]
        make(group, name, shape)

    return plant


def pt_blob(pickled_payload: bytes) -> bytes:
    """What ``torch.save`` writes for weights plus the payload (a zip holding a pickle)."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.ones(3), "extra": PickledBytes(pickled_payload)}, buffer)
    return buffer.getvalue()


class PickledBytes:
    """Pickles as ``pickle.loads(data)``: unpickling it unpickles (runs) ``data``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (pickle.loads, (self.data,))


def first_weight(tree: Any) -> str:
    return tree["state_dict"][sorted(tree["state_dict"])[0]]["$tensor"]


def first_moment(tree: Any) -> str:
    state = tree["optimizer_states"][0]["state"]
    entry = state["$dict"][0][1] if "$dict" in state else next(iter(state.values()))
    return entry["exp_avg"]["$tensor"]


def tree_attr(edit: Callable[[Any], Any]) -> Any:
    def plant(f: h5py.File, payload: bytes) -> None:
        f["vocoder_checkpoint"].attrs["tree"] = json.dumps(
            edit(json.loads(f["vocoder_checkpoint"].attrs["tree"]))
        )

    return plant


GENERATE = "generate"
FRESH = "train vocoder --fresh"
RESUME = "train vocoder --resume"
INFO = "model info"

CASES = [
    # the VAE: pickles, shapes, sizes, dtypes, values, configs
    Case(
        "opaque dataset of pickle bytes",
        replace_weight(
            "vae",
            lambda g, n, s, p: g.create_dataset(
                n, data=np.frombuffer((p * 10_000)[: int(np.prod(s)) * 4], "V4").reshape(s)
            ),
        ),
        {GENERATE: "not float weights", FRESH: "not float weights"},
    ),
    Case(
        "object dataset holding a pickle",
        replace_weight(
            "vae",
            lambda g, n, s, p: g.create_dataset(n, shape=s, dtype=h5py.vlen_dtype(np.uint8)).__setitem__(
                (0,) * len(s), np.frombuffer(p, np.uint8)
            ),
        ),
        {GENERATE: "holds object values", FRESH: "holds object values"},
    ),
    Case(
        "a torch .pt blob among the weights",
        lambda f, p: f["vae"]["weights"].create_dataset("model.pt", data=np.frombuffer(pt_blob(p), np.uint8)),
        {GENERATE: "unexpected weight 'model.pt'", FRESH: "unexpected weight 'model.pt'"},
    ),
    Case(
        "pickle bytes as the stored config",
        lambda f, p: f["vae"].attrs.__setitem__("config", np.void(p)),
        {INFO: "unexpected type", GENERATE: "unexpected type", FRESH: "unexpected type"},
    ),
    Case(
        "absurd shape",
        replace_weight(
            "vae", lambda g, n, s, p: g.create_dataset(n, shape=(2**31, 2**31), chunks=(1, 1024), dtype="f4")
        ),
        {GENERATE: "has shape (2147483648, 2147483648)", FRESH: "has shape (2147483648, 2147483648)"},
    ),
    Case(
        "declared size not stored",
        replace_weight("vae", lambda g, n, s, p: g.create_dataset(n, shape=s, chunks=s, dtype="f4")),
        {GENERATE: "but the file stores only 0", FRESH: "but the file stores only 0"},
    ),
    Case(
        "integer weights",
        replace_weight("vae", lambda g, n, s, p: g.create_dataset(n, data=np.ones(s, np.int64))),
        {GENERATE: "'int64' values, not float weights", FRESH: "'int64' values, not float weights"},
    ),
    Case(
        "complex weights",
        replace_weight("vae", lambda g, n, s, p: g.create_dataset(n, data=np.ones(s, np.complex64))),
        {GENERATE: "'complex64' values", FRESH: "'complex64' values"},
    ),
    Case(
        "NaN weights",
        replace_weight("vae", lambda g, n, s, p: g.create_dataset(n, data=np.full(s, np.nan, np.float32))),
        {GENERATE: "non-finite", FRESH: "non-finite"},
    ),
    Case(
        "config of the wrong type",
        edit_json("vae", "config", set_item("model.latent_dim", "many")),
        {GENERATE: "'model.latent_dim' must be int", FRESH: "'model.latent_dim' must be int"},
    ),
    Case(
        "config out of range",
        edit_json("vae", "config", set_item("model.channels", [10**9])),
        {GENERATE: "must be between 1 and 4096", FRESH: "must be between 1 and 4096"},
    ),
    Case(
        "config not a mapping",
        edit_json("vae", "config", lambda d: [d]),
        {GENERATE: "must be a mapping", FRESH: "must be a mapping"},
    ),
    Case(
        "config nested 100 000 deep",
        lambda f, p: f["vae"].attrs.__setitem__("config", "[" * 100_000 + "]" * 100_000),
        {INFO: "damaged", GENERATE: "damaged", FRESH: "damaged"},
    ),
    Case(
        "summary and manifest of the wrong types",
        lambda f, p: (
            f["vae"].attrs.__setitem__(
                "summary", json.dumps(json.dumps({"status": ["x"], "steps": {"a": 1}}))
            ),
            f["dataset"].attrs.__setitem__(
                "manifest", json.dumps({"root": "[/bold]", "files": [7, {"duration_s": "long"}]})
            ),
        ),
        {FRESH: "manifest is malformed"},
    ),
    Case(
        "manifest reaching outside its folder",
        edit_json(
            "dataset",
            "manifest",
            lambda d: set_item("files", [{**d["files"][0], "path": "../../etc/passwd"}])(d),
        ),
        {FRESH: "manifest is malformed"},
    ),
    # the per-model vocoder
    Case(
        "vocoder weights NaN",
        replace_weight(
            "vocoder", lambda g, n, s, p: g.create_dataset(n, data=np.full(s, np.inf, np.float32))
        ),
        {GENERATE: "non-finite"},
    ),
    Case(
        "vocoder config of the wrong type",
        edit_json("vocoder", "config", set_item("upsample_rates", "fast")),
        {GENERATE: "must be a list", RESUME: "'generator.upsample_rates' must be a list"},
    ),
    Case(
        "vocoder config asking for 48 GB",
        edit_json(
            "vocoder",
            "config",
            lambda d: {**d, "upsample_initial_channel": 4096, "upsample_kernel_sizes": [1024] * 4},
        ),
        {GENERATE: "must be between"},
    ),
    Case(
        "valid vocoder config of 222 MB over the tiny weights",
        edit_json(
            "vocoder",
            "config",
            lambda d: {
                **d,
                "upsample_initial_channel": 1024,
                "resblock_kernel_sizes": [3, 7, 11],
                "resblock_dilations": [[1, 3, 5]] * 3,
            },
        ),
        {GENERATE: "does not match this network"},
    ),
    Case(
        "vocoder status and epochs forged",
        lambda f, p: (
            f["vocoder"].attrs.__setitem__("status", '"trusted"'),
            f["vocoder"].attrs.__setitem__("epochs_completed", "-3"),
        ),
        {GENERATE: "damaged"},
    ),
    Case(
        "training config out of range",
        edit_json("vocoder", "train_config", set_item("lr", 50.0)),
        {RESUME: "'train.lr' must be between"},
    ),
    # the resumable training state
    Case(
        "a pickle entry in the training state",
        lambda f, p: f["vocoder_checkpoint"].attrs.__setitem__("tree", json.dumps({"$pickle": p.hex()})),
        {RESUME: "unknown entry '$pickle'"},
    ),
    Case(
        "training state not a mapping",
        tree_attr(lambda tree: [tree]),
        {RESUME: "cannot resume"},
    ),
    Case(
        "saved weight of the wrong shape",
        checkpoint_tensor(first_weight, lambda g, n, s: g.create_dataset(n, data=np.zeros((3,), np.float32))),
        {RESUME: "does not fit this run"},
    ),
    Case(
        "NaN in the saved state",
        checkpoint_tensor(
            first_weight, lambda g, n, s: g.create_dataset(n, data=np.full(s, np.nan, np.float32))
        ),
        {RESUME: "non-finite"},
    ),
    Case(
        "optimizer moments of the wrong shape",
        checkpoint_tensor(first_moment, lambda g, n, s: g.create_dataset(n, data=np.zeros((7,), np.float32))),
        {RESUME: "optimizer state"},
    ),
]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model: tiny VAE, manifest, one trained vocoder epoch with its resumable state kept."""
    root = tmp_path_factory.mktemp("hostile")
    models = root / "models"
    corpus = write_short_corpus(root / "corpus")
    path = make_vae_model(corpus, models / "base.distillgan")
    recipe = write_recipe(root / "vocoder.yaml", TINY_VOCODER, keep_checkpoint=True, preview_interval=100)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = invoke(["train", "vocoder", str(path), "--config", str(recipe), "--epochs", "1"])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.stderr
    return path


def assert_clean(result: CliResult, what: str) -> None:
    """Works, or fails with exactly one `error:` line (warnings may precede it) and no traceback."""
    assert "Traceback" not in result.stdout + result.stderr, f"{what}:\n{result.stderr}"
    if result.exit_code != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], f"{what}:\n{result.stderr}"


def error_line(result: CliResult) -> str:
    return result.stderr.strip().splitlines()[-1] if result.exit_code != 0 else ""


def test_the_payloads_would_run_if_unpickled(tmp_path: Path) -> None:
    """The marker check below means something: these payloads do create the file when loaded."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker.unlink()
    torch.load(io.BytesIO(pt_blob(pickle.dumps(Payload(marker)))), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file_is_refused_or_harmless(base_model: Path, tmp_path: Path, case: Case) -> None:
    marker = tmp_path / "PAYLOAD-RAN"
    payload = pickle.dumps(Payload(marker))
    models = tmp_path / "models"
    models.mkdir()
    model = models / "m.distillgan"
    shutil.copy(base_model, model)
    with h5py.File(model, "r+") as f:
        case.plant(f, payload)
    hostile = model.read_bytes()
    where = ["--models-dir", str(models)]

    # reading: bounded memory whatever the file declares
    tracemalloc.start()
    try:
        results = {
            INFO: invoke(["model", "info", "m", *where]),
            "model info --json": invoke(["model", "info", "m", "--json", *where]),
            "model list": invoke(["model", "list", *where]),
        }
        for load in (load_vae, load_hifigan):
            try:
                with address_space_limit(128 * 2**20):  # torch's allocations, which tracemalloc misses
                    load(model)
            except Exception as exc:  # only the product's own one-line errors
                assert type(exc).__module__ == "distillgan.errors", repr(exc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated reading the file"
    assert results["model list"].exit_code == 0

    out = tmp_path / "out.wav"
    results[GENERATE] = invoke(
        ["generate", "m", "--vocoder", "hifigan", "--duration", "0.2", "--seed", "1", "-o", str(out), *where]
    )
    if FRESH in case.refused:
        results[FRESH] = invoke(["train", "vocoder", "m", "--fresh", "--yes", "--epochs", "1", *where])
    if RESUME in case.refused:
        results[RESUME] = invoke(["train", "vocoder", "m", "--resume", "--epochs", "2", *where])

    for what, result in results.items():
        assert_clean(result, what)
    for what, fragment in case.refused.items():
        assert results[what].exit_code != 0, f"{what} accepted the file:\n{results[what].stdout}"
        assert fragment in error_line(results[what]), f"{what}: {error_line(results[what])}"
    assert not marker.exists(), "code from the model file ran"
    if case.refused.keys() & {FRESH, RESUME}:
        assert model.read_bytes() == hostile, "a refused training run changed the file"


def vae_checkpoint_weight(f: h5py.File) -> None:
    group = f["vae_checkpoint"]
    name = first_weight(json.loads(group.attrs["tree"]))
    del group[name]
    group.create_dataset(name, data=np.zeros((5,), np.float32))


VAE_RESUME_CASES = {
    "stored config missing": (lambda f: f["vae"].attrs.__delitem__("config"), "no usable stored VAE config"),
    "stored config of the wrong type": (
        lambda f: edit_json("vae", "config", set_item("model.latent_dim", "many"))(f, b""),
        "'model.latent_dim' must be int",
    ),
    "stored config not JSON": (lambda f: f["vae"].attrs.__setitem__("config", "{oops"), "damaged"),
    "stored config of another network": (
        lambda f: edit_json("vae", "config", set_item("model.channels", [8, 8]))(f, b""),
        "cannot resume",
    ),
    "saved weight of the wrong shape": (vae_checkpoint_weight, "does not fit this run"),
}


@pytest.fixture(scope="module")
def unfinished_vae(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A VAE run stopped after its first epoch: the model file holds its resumable state."""
    from distillgan.corpus import load_corpus
    from distillgan.modelfile import ModelLock
    from distillgan.progress import CancelToken
    from distillgan.recipes import load_vae_config
    from distillgan.training import train_vae
    from tests.robustness.harness import TINY_VAE

    root = tmp_path_factory.mktemp("unfinished-vae")
    corpus = write_short_corpus(root / "corpus")
    path = root / "v.distillgan"
    token = CancelToken()
    cfg = load_vae_config(
        None, {**TINY_VAE, "train": {**TINY_VAE["train"], "epochs": 20, "accelerator": "cpu"}}
    )
    with ModelLock(path, owner="test") as lock:
        train_vae(
            load_corpus(corpus),
            path,
            cfg,
            lock=lock,
            cancel=token,
            listener=lambda event: token.cancel() if event.kind == "epoch" else None,
        )
    return corpus, path


@pytest.mark.parametrize("name", list(VAE_RESUME_CASES))
def test_train_vae_resume_refuses_a_hostile_saved_run(
    unfinished_vae: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    corpus, base = unfinished_vae
    plant, fragment = VAE_RESUME_CASES[name]
    models = tmp_path / "models"
    models.mkdir()
    model = models / "v.distillgan"
    shutil.copy(base, model)
    with h5py.File(model, "r+") as f:
        assert "vae_checkpoint" in f
        plant(f)
    hostile = model.read_bytes()
    result = invoke(["train", "vae", str(corpus), "--name", "v", "--resume", "--models-dir", str(models)])
    assert_clean(result, "train vae --resume")
    assert result.exit_code != 0 and fragment in error_line(result), result.stderr
    assert model.read_bytes() == hostile
