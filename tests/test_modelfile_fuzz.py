"""Damaged model files: whatever bytes are flipped, cut or inserted, reading and rewriting either
work or raise ModelFileError -- never another exception, never a hang. And stored vocoder configs
that pass validation however large: the weights are checked against the shapes they imply before
anything is read or allocated."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from distillgan.config import from_dict
from distillgan.errors import ConfigError, ModelFileError
from distillgan.modelfile import ModelLock, Section, open_model, pack_tree, write_model
from distillgan.networks.hifigan import Generator, HiFiGANConfig, generator_shapes
from tests.address_space import address_space_limit

# raise for a longer local campaign, e.g. FUZZ_EXAMPLES=5000
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))


@functools.cache
def valid_model() -> bytes:
    """A small model touching every feature, so most of its bytes are HDF5 metadata worth damaging."""
    state = {"step": torch.tensor(3.0), "pairs": (1, [2.5]), 0: np.arange(3, dtype=np.uint32)}
    sections = {
        "vae": Section(
            attrs={"config": {"latent_dim": 4, "channels": [8, 8]}},
            tensors={
                "weights/conv.weight": torch.linspace(-1, 1, 12).reshape(2, 3, 2),
                "weights/conv.bias": torch.ones(2, dtype=torch.bfloat16),
                "weights/count": torch.tensor(7),
                "weights/mask": torch.tensor([True, False]),
            },
        ),
        "dataset": Section(attrs={"root": "/audio", "files": [{"path": "a.wav", "size": 3}]}),
        "vocoder_checkpoint": pack_tree(state),
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.distillgan"
        with ModelLock(path, owner="fuzz") as lock:
            write_model(path, sections, lock=lock, create=True)
        return path.read_bytes()


def mutate(data: bytes, edits: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    for op, where, arg in edits:
        pos = where % (len(buf) + 1)
        if op == "set" and pos < len(buf):
            buf[pos] = arg
        elif op == "xor" and pos < len(buf):
            buf[pos] ^= arg
        elif op == "insert":
            buf[pos:pos] = arg
        elif op == "delete":
            del buf[pos : pos + arg]
        elif op == "truncate":
            del buf[pos:]
    return bytes(buf)


positions = st.integers(0, 2**32)
edit = st.one_of(
    st.tuples(
        st.just("set"), positions, st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]) | st.integers(0, 255)
    ),
    st.tuples(st.just("xor"), positions, st.integers(1, 255)),
    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), positions, st.integers(1, 16)),
    st.tuples(st.just("truncate"), positions, st.none()),
)


def read_and_rewrite(path: Path) -> None:
    reader = open_model(path)
    reader.size_bytes()
    for section in reader.sections():
        assert reader.has(section)
        if "tree" in reader.attrs(section):
            reader.tree(section)
        reader.tensors(section, allow_non_finite=True)
    with ModelLock(path, owner="fuzz") as lock:
        write_model(path, {"dataset": Section(attrs={"rewritten": True})}, lock=lock)
    open_model(path).attrs("dataset")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.timeout(300)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(edit, min_size=1, max_size=4))
def test_damaged_file_gives_model_file_error(folder: Path, edits: list[tuple[Any, ...]]) -> None:
    path = folder / "fuzz.distillgan"
    path.write_bytes(mutate(valid_model(), edits))
    with contextlib.suppress(ModelFileError):
        read_and_rewrite(path)
    leftovers = [
        p.name for p in folder.iterdir() if p.name not in ("fuzz.distillgan", "fuzz.distillgan.lock")
    ]
    assert leftovers == []


def test_valid_model_passes(folder: Path) -> None:
    path = folder / "valid.distillgan"
    path.write_bytes(valid_model())
    read_and_rewrite(path)


@st.composite
def vocoder_configs(draw: st.DrawFn) -> dict[str, Any]:
    """Vocoder configs that pass validation, drawn towards the largest networks: up to and past
    the bounds (4096 channels, kernels of 1024), so that a config validation lets through is
    tried however large it is; those it refuses are rejected."""
    rates = draw(st.sampled_from([[8, 8, 4, 2], [8, 8, 8], [16, 16, 2], [32, 16], [4, 4, 4, 2, 2, 2]]))
    spread = draw(st.sampled_from([2, 16, 512]))
    count = draw(st.integers(1, 8))
    cfg = {
        "upsample_initial_channel": draw(st.sampled_from([2**k for k in range(len(rates), 13)])),
        "upsample_rates": rates,
        "upsample_kernel_sizes": [rate + 2 * draw(st.integers(0, spread)) for rate in rates],
        "resblock_kernel_sizes": draw(
            st.lists(st.sampled_from([3, 7, 11, 31, 63]), min_size=count, max_size=count)
        ),
        "resblock_dilations": draw(
            st.lists(st.lists(st.integers(1, 64), min_size=1, max_size=8), min_size=count, max_size=count)
        ),
    }
    try:
        from_dict(HiFiGANConfig, cfg)
    except ConfigError:
        reject()
    return cfg


@functools.cache
def small_generator_model() -> bytes:
    """A model file holding the inference weights of a small generator."""
    weights = Generator(HiFiGANConfig(upsample_initial_channel=16), weight_norm=False).state_dict()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g.distillgan"
        with ModelLock(path, owner="fuzz") as lock:
            sections = {"vocoder": Section(tensors={f"generator/{k}": v for k, v in weights.items()})}
            write_model(path, sections, lock=lock, create=True)
        return path.read_bytes()


@pytest.mark.timeout(300)
@settings(max_examples=max(1, EXAMPLES // 10), deadline=None, suppress_health_check=list(HealthCheck))
@given(cfg=vocoder_configs())
def test_weights_are_checked_against_a_valid_configs_shapes_before_any_is_read(
    folder: Path, cfg: dict[str, Any]
) -> None:
    path = folder / "generator.distillgan"
    path.write_bytes(small_generator_model())
    with address_space_limit(256 * 2**20):
        expected = generator_shapes(from_dict(HiFiGANConfig, cfg))
        try:
            weights = open_model(path).tensors("vocoder", expected, prefix="generator")
        except ModelFileError as error:
            assert "does not match this network" in str(error)
        else:
            assert {k: tuple(v.shape) for k, v in weights.items()} == expected
