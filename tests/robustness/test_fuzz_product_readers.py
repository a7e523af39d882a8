"""Fuzzing the ways the product reads a model file, not only the model-file module.

tests/test_modelfile_fuzz.py damages bytes and reads through ``distillgan.modelfile``. Here the
damage reaches what the commands do with what they read: `model info` / `model list`, the VAE
and HiFi-GAN loaders (stored configs, expected names, shapes and dtypes), the vocoder summary
behind auto-selection, and the corpus manifest check the trainers start with. Two campaigns:
bytes flipped in a real product file, and stored JSON values (configs, summaries, manifest,
vocoder status) replaced by arbitrary JSON, and vocoder configs that pass validation however
large (read under a bound on allocations: nothing is built before the stored shapes are checked).
Whatever happens must be a DistillganError (one clear line) or success. Bounded: FUZZ_EXAMPLES
examples (default 40, half for the JSON and config campaigns; raise it locally for a longer
campaign, e.g. FUZZ_EXAMPLES=2000).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import h5py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillgan.config import json_attr
from distillgan.corpus import check_manifest
from distillgan.errors import DistillganError
from distillgan.generation import load_vae, vocoder_status
from distillgan.lightning_modules.hifigan import HiFiGANModule
from distillgan.modelfile import ModelLock, StageRecord, open_model, write_model
from distillgan.recipes import load_vocoder_config
from tests.address_space import address_space_limit
from tests.cli.conftest import invoke
from tests.robustness.harness import TINY_VOCODER, make_vae_model, write_short_corpus
from tests.test_modelfile_fuzz import edit as byte_edit
from tests.test_modelfile_fuzz import mutate, vocoder_configs

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
# an example that gets past the header builds both networks (~0.5 s): half as many of those
FUZZ_SLOW = settings(FUZZ, max_examples=max(1, EXAMPLES // 2))
_names = itertools.count()


@functools.cache
def product_model() -> bytes:
    """A small model as the product writes it: VAE, corpus manifest, per-model vocoder."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = make_vae_model(write_short_corpus(root / "corpus"), root / "m.distillgan")
        cfg = load_vocoder_config(None, TINY_VOCODER)
        progress = StageRecord(status="partial", epoch=1, epochs_completed=1, total_epochs=2, steps=6)
        with ModelLock(path, owner="fuzz") as lock:
            write_model(path, HiFiGANModule(cfg).model_file_sections(progress), lock=lock)
        return path.read_bytes()


def read_like_the_product(path: Path, empty_folder: Path) -> None:
    for args in (
        ["model", "info", str(path)],
        ["model", "info", str(path), "--json"],
        ["model", "list", "--models-dir", str(path.parent)],
    ):
        result = invoke(args)  # an exception other than a clean exit fails the example
        assert "Traceback" not in result.stdout + result.stderr
        if result.exit_code != 0:
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for read in (load_vae, _load_hifigan, vocoder_status, _check_corpus(empty_folder)):
        with contextlib.suppress(DistillganError):
            read(path)


def _load_hifigan(path: Path) -> Any:
    from distillgan.vocoders.hifigan import load_hifigan

    return load_hifigan(path)


def _check_corpus(folder: Path) -> Any:
    def check(path: Path) -> Any:
        # what `train vocoder` does first; the (empty) folder keeps a fuzzed root off the real disk
        reader = open_model(path)
        manifest = json_attr(reader.attrs("dataset").get("manifest")) if reader.has("dataset") else {}
        return check_manifest(manifest, folder)

    return check


def fresh_path(folder: Path) -> Path:
    """A new name per example: the loaders cache by path, inode, mtime and size."""
    for old in folder.glob("*.distillgan"):
        old.unlink()
    return folder / f"f{next(_names)}.distillgan"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tmp_path_factory.mktemp("fuzz-models"), tmp_path_factory.mktemp("fuzz-empty")


@pytest.mark.timeout(300)
@FUZZ
@given(edits=st.lists(byte_edit, min_size=1, max_size=4))
def test_damaged_bytes_never_crash_a_command(
    folders: tuple[Path, Path], edits: list[tuple[Any, ...]]
) -> None:
    path = fresh_path(folders[0])
    path.write_bytes(mutate(product_model(), edits))
    read_like_the_product(path, folders[1])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["[/bold]", "complete", "partial", "hifigan_v2", "../../etc", "$tensor"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _nodes(item, (*path, i))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    value[head] = _replace(value[head], tuple(rest), new)
    return value


@functools.cache
def stored_json() -> list[tuple[str, str]]:
    """(section, attribute) of every JSON attribute of the product file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.distillgan"
        path.write_bytes(product_model())
        with h5py.File(path, "r") as f:
            return [(section, key) for section in sorted(f) for key in sorted(f[section].attrs)]


@pytest.mark.timeout(300)
@FUZZ_SLOW
@given(data=st.data())
def test_forged_json_values_never_crash_a_command(folders: tuple[Path, Path], data: st.DataObject) -> None:
    path = fresh_path(folders[0])
    path.write_bytes(product_model())
    with h5py.File(path, "r+") as f:
        for _ in range(data.draw(st.integers(1, 3))):
            section, key = data.draw(st.sampled_from(stored_json()))
            value = json.loads(f[section].attrs[key])
            nested = isinstance(value, str) and value[:1] in ("{", "[")  # JSON text inside JSON
            if nested:
                value = json.loads(value)
            where = data.draw(st.sampled_from(_nodes(value)))
            value = _replace(value, where, data.draw(json_values))
            f[section].attrs[key] = json.dumps(json.dumps(value) if nested else value)
    read_like_the_product(path, folders[1])


@pytest.mark.timeout(300)
@FUZZ_SLOW
@given(cfg=vocoder_configs())
def test_valid_but_huge_vocoder_configs_never_crash_a_command(
    folders: tuple[Path, Path], cfg: dict[str, Any]
) -> None:
    path = fresh_path(folders[0])
    path.write_bytes(product_model())
    with h5py.File(path, "r+") as f:
        f["vocoder"].attrs["config"] = json.dumps(json.dumps(cfg))  # JSON text, as the product stores it
    with address_space_limit(2**30):
        read_like_the_product(path, folders[1])
