"""The compiled resblock kernel: same function as torch's path, built once, and optional."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from distillgan.mel import HOP_LENGTH
from distillgan.networks.hifigan import LRELU_SLOPE, Generator, HiFiGANConfig
from distillgan.vocoders import native
from distillgan.vocoders.hifigan import NATIVE_TILE_SAMPLES, InferenceGenerator, build_generator
from tests.vocoders.model_files import unit_gain_

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")

# V2's stage widths (64, 32, 16, 8) with resblocks that exercise every case of the kernel:
# a 1-tap conv, a block of one layer, large and repeated dilations, an even layer count.
ODD_BLOCKS = HiFiGANConfig(
    resblock_kernel_sizes=[1, 5, 11],
    resblock_dilations=[[1], [2, 7], [1, 3, 5, 9]],
    discriminator_channel_divisor=16,
)


@pytest.fixture
def fresh_kernel_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No loaded kernel and a private kernel cache; both restored afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    native._load.cache_clear()
    yield
    native._load.cache_clear()


def needs_kernel() -> native.ResblockKernel:
    """The kernel; a test skips only on a machine with no C compiler, never when a build fails."""
    kernel = native.resblock_kernel()
    if kernel is None:
        if "no C compiler found" in native.status():
            pytest.skip(native.status())
        pytest.fail(f"the compiled kernel does not build: {native.status()}")
    return kernel


def random_stage_input(channels: int, length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels, 1, length, generator=generator).contiguous(
        memory_format=torch.channels_last
    )


def test_the_kernel_computes_every_stage_like_torch() -> None:
    needs_kernel()
    network = InferenceGenerator(unit_gain_(Generator(ODD_BLOCKS, weight_norm=False)).eval())
    assert [p.channels for p in network.packed if p is not None] == [64, 32, 16, 8]
    for index, (blocks, packed) in enumerate(zip(network.stages, network.packed, strict=True)):
        assert packed is not None
        x = random_stage_input(packed.channels, 3 * NATIVE_TILE_SAMPLES + 123, seed=index)
        with torch.inference_mode():
            expected = network._resblocks(blocks, x)  # torch, one pass
            got = network._native(packed, x)  # the kernel, in several tiles
        assert got.shape == expected.shape and expected.std() > 0.5
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_the_kernel_writes_only_the_kept_rows() -> None:
    kernel = needs_kernel()
    network = InferenceGenerator(unit_gain_(Generator(ODD_BLOCKS, weight_norm=False)).eval())
    packed, blocks = network.packed[3], network.stages[3]
    assert packed is not None
    x = random_stage_input(8, 500, seed=7)
    rows = x[0, :, 0].T
    with torch.inference_mode():
        expected = network._resblocks(blocks, x)[0, :, 0].T
    out = torch.full((5 + 300 + 5, 8), float("nan"))
    kernel(rows, (100, 400), out[5:-5], packed, LRELU_SLOPE)
    torch.testing.assert_close(out[5:-5], expected[100:400], atol=1e-4, rtol=1e-4)
    assert out[:5].isnan().all() and out[-5:].isnan().all()
    with pytest.raises(ValueError, match="bad tile"):
        kernel(rows, (100, 400), out, packed, LRELU_SLOPE)  # not the kept rows' shape
    with pytest.raises(ValueError, match="bad tile"):
        kernel(rows.double(), (100, 400), out[5:-5], packed, LRELU_SLOPE)
    with pytest.raises(ValueError, match="bad tile"):  # the weights are for 8 channels
        kernel(torch.zeros(500, 16), (100, 400), torch.zeros(300, 16), packed, LRELU_SLOPE)


@pytest.mark.parametrize("case", ["batch-of-two", "float64"])
def test_inputs_the_kernel_does_not_take_run_on_torch(case: str) -> None:
    needs_kernel()
    generator = unit_gain_(Generator(ODD_BLOCKS, weight_norm=False)).eval()
    fast = InferenceGenerator(generator)
    batch = 2 if case == "batch-of-two" else 1
    mel = -5.0 + 1.5 * torch.randn(batch, 128, 12, generator=torch.Generator().manual_seed(1))
    if case == "float64":
        generator, fast, mel = generator.double(), fast.double(), mel.double()
    with torch.inference_mode():
        torch.testing.assert_close(fast(mel), generator(mel), atol=2e-5, rtol=1e-4)


def test_the_v2_vocoder_runs_on_the_kernel_and_matches_the_generator() -> None:
    needs_kernel()
    generator = unit_gain_(build_generator(HiFiGANConfig()))
    fast = InferenceGenerator(generator)
    assert all(packed is not None for packed in fast.packed)
    mel = -5.0 + 1.5 * torch.randn(1, 128, 30, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        reference = generator(mel)
        got = fast(mel)
    assert got.shape == (1, 1, 30 * HOP_LENGTH) and reference.std() > 0.05
    torch.testing.assert_close(got, reference, atol=2e-5, rtol=1e-4)


def test_a_kernel_that_disagrees_with_torch_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    needs_kernel()
    exact = native.ResblockKernel.__call__

    def off_by_a_little(
        self: native.ResblockKernel, x: torch.Tensor, keep: tuple[int, int], out: torch.Tensor, *rest: object
    ) -> None:
        exact(self, x, keep, out, *rest)  # type: ignore[arg-type]
        out.add_(1e-2)

    monkeypatch.setattr(native.ResblockKernel, "__call__", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger="distillgan.vocoders.hifigan"):
        network = InferenceGenerator(unit_gain_(Generator(ODD_BLOCKS, weight_norm=False)).eval())
    assert network.packed == [None, None, None, None]
    assert "compiled resblock kernel is off" in caplog.text


def test_disabled_by_the_environment(monkeypatch: pytest.MonkeyPatch, fresh_kernel_state: None) -> None:
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    assert native.resblock_kernel() is None
    assert native.status() == f"torch (disabled by {native.SWITCH_ENV})"
    generator = unit_gain_(Generator(ODD_BLOCKS, weight_norm=False)).eval()
    assert InferenceGenerator(generator).packed == [None, None, None, None]


def test_without_a_compiler_vocoding_uses_torch(
    monkeypatch: pytest.MonkeyPatch,
    fresh_kernel_state: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with caplog.at_level(logging.INFO, logger="distillgan.vocoders.native"):
        assert native.resblock_kernel() is None
    assert "no C compiler found" in caplog.text and "no C compiler found" in native.status()
    generator = unit_gain_(Generator(ODD_BLOCKS, weight_norm=False)).eval()
    fast = InferenceGenerator(generator)
    assert fast.packed == [None, None, None, None]
    mel = -5.0 + 1.5 * torch.randn(1, 128, 12, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(fast(mel), generator(mel), atol=2e-5, rtol=1e-4)


def fake_compiler(folder: Path, script: str) -> Path:
    path = folder / "fake-cc"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_compiler_that_fails_is_reported_and_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel_state: None, tmp_path: Path
) -> None:
    # answers the version and CPU-feature queries, fails to compile
    script = (
        'case "$*" in *--version*|*-dM*) echo fake 1.0; exit 0;; esac\necho "error: no vectors" >&2\nexit 1\n'
    )
    monkeypatch.setenv("CC", f"{fake_compiler(tmp_path / 'bin', script)} -DWITH_AN_ARGUMENT")
    assert native.resblock_kernel() is None
    assert "could not compile resblocks.c:" in native.status() and "error: no vectors" in native.status()
    assert not list((tmp_path / "cache" / "distillgan" / "kernels").iterdir())


def test_the_build_is_cached_per_source_and_cpu(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel_state: None, tmp_path: Path
) -> None:
    needs_kernel()
    log = tmp_path / "compiles.log"
    real = native._compiler()[0]
    # a compiler that records each compilation, then does the real work
    script = f'case "$*" in *-shared*) echo built >> "{log}";; esac\nexec "{real}" "$@"\n'
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path / "bin", script)))
    folder = tmp_path / "kernels"
    first = native.build(folder)
    assert native.build(folder) == first and log.read_text().count("built") == 1  # reused
    native.ResblockKernel(first)  # loads

    edited = tmp_path / "resblocks.c"
    edited.write_text(native.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(native, "SOURCE", edited)
    second = native.build(folder)
    monkeypatch.setattr(native, "_cpu_identity", lambda compiler: "another CPU")
    third = native.build(folder)
    assert len({first, second, third}) == 3 and log.read_text().count("built") == 3
    # each library beside the SHA-256 recorded when it was built
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        name for p in (first, second, third) for name in (p.name, f"{p.name}.sha256")
    )


def shared_cache(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """A fresh kernel cache under ``root`` ($XDG_CACHE_HOME), nothing loaded yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    native._load.cache_clear()
    folder = root / "distillgan" / "kernels"
    folder.mkdir(parents=True, mode=0o700)
    return folder


@pytest.mark.parametrize("writable", ["kernels", "cache"])
def test_a_cache_other_users_can_write_to_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
    fresh_kernel_state: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    writable: str,
) -> None:
    """What the cache holds is code this process runs: another user who can write there (e.g.
    $XDG_CACHE_HOME under /tmp) could plant theirs. Such a cache falls back to torch, logged."""
    needs_kernel()
    folder = shared_cache(monkeypatch, tmp_path / "shared")
    (folder if writable == "kernels" else tmp_path / "shared").chmod(0o777)
    with caplog.at_level(logging.INFO, logger="distillgan.vocoders.native"):
        assert native.resblock_kernel() is None
    assert "is writable by other users" in native.status() and "writable by other users" in caplog.text
    assert not list(folder.iterdir())


def test_a_cache_of_another_user_is_not_used(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel_state: None, tmp_path: Path
) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    needs_kernel()
    folder = shared_cache(monkeypatch, tmp_path / "shared")
    os.chown(folder, 65534, 65534)  # nobody's
    assert native.resblock_kernel() is None
    assert "belongs to another user" in native.status()


def test_a_library_changed_since_its_build_is_never_loaded(
    fresh_kernel_state: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    needs_kernel()
    folder = tmp_path / "kernels"
    built = native.build(folder)
    recorded = (folder / f"{built.name}.sha256").read_text().strip()
    assert recorded == hashlib.sha256(built.read_bytes()).hexdigest()
    planted = built.read_bytes() + b"planted"
    built.write_bytes(planted)
    with caplog.at_level(logging.WARNING, logger="distillgan.vocoders.native"):
        again = native.build(folder)  # built anew, not loaded as found
    assert "does not match the SHA-256 recorded" in caplog.text
    assert again.read_bytes() != planted
    assert (folder / f"{again.name}.sha256").read_text().strip() == hashlib.sha256(
        again.read_bytes()
    ).hexdigest()
    native.ResblockKernel(again)


def test_a_cc_that_is_not_a_command_is_named(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel_state: None
) -> None:
    monkeypatch.setenv("CC", "no-such-compiler --fast")
    assert native.resblock_kernel() is None
    assert native.status() == "torch ($CC (no-such-compiler --fast) is not a command on PATH)"
