"""The vocoder interface: per-model HiFi-GAN from a model file, BigVGAN, chunking, readiness."""

from __future__ import annotations

import json
import multiprocessing
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np
import pytest
import torch

from distillgan.errors import ModelFileError, VocoderUnavailableError
from distillgan.mel import HOP_LENGTH, SAMPLE_RATE, log_mel_spectrogram
from distillgan.modelfile import ModelLock, Section, write_model
from distillgan.networks.bigvgan import BigVGAN, BigVGANConfig
from distillgan.networks.hifigan import Generator, HiFiGANConfig
from distillgan.vocoders import bigvgan as bigvgan_vocoder
from distillgan.vocoders import hifigan as hifigan_vocoder
from distillgan.vocoders.bigvgan import BigVGANVocoder, load_bigvgan_vocoder
from distillgan.vocoders.hifigan import (
    GOOD_MEL_L1,
    GOOD_NETWORK_MEL_L1,
    TILE_BYTES,
    HiFiGANInfo,
    HiFiGANVocoder,
    InferenceGenerator,
    build_generator,
    load_hifigan,
    read_vocoder_info,
)
from distillgan.vocoders.mel_match import match_to_mel
from distillgan.vocoders.prior import read_starting_weights
from tests.address_space import address_space_limit
from tests.vocoders.model_files import (
    NARROW_HIFIGAN,
    SOURCE_HIFIGAN,
    TINY_HIFIGAN,
    TINY_WIDE_HIFIGAN,
    nvidia_files,
    unit_gain_,
    write_folder,
    write_model_file,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
CPU = torch.device("cpu")
T = TypeVar("T")


def random_mel(frames: int, seed: int = 0) -> torch.Tensor:
    """A log-mel with the range and slow variation of real ones."""
    generator = torch.Generator().manual_seed(seed)
    slow = torch.randn(128, frames // 8 + 2, generator=generator).repeat_interleave(8, dim=1)[:, :frames]
    return -5.0 + 1.5 * slow + 0.3 * torch.randn(128, frames, generator=generator)


def hifigan_vocoder_for(cfg: HiFiGANConfig, seed: int = 0) -> HiFiGANVocoder:
    generator = unit_gain_(Generator(cfg, weight_norm=False), seed).eval().requires_grad_(False)
    return HiFiGANVocoder(generator, CPU)


def in_fresh_thread(fn: Callable[[], T]) -> T:
    """``fn()`` without autograd in a new thread that flushes denormals, as vocoding runs."""

    def call() -> T:
        torch.set_flush_denormal(True)
        with torch.inference_mode():
            return fn()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def reach_in_frames(network: torch.nn.Module, frames: int) -> int:
    """How many mel frames away from a changed input frame the output changes (either side).

    Output samples that do not depend on the changed frame are computed by exactly the same
    operations on the same numbers, so they come out bit-identical.
    """
    mel = random_mel(frames).unsqueeze(0)
    changed = mel.clone()
    centre = frames // 2
    changed[:, :, centre] += 1.0
    before, after = in_fresh_thread(lambda: (network(mel), network(changed)))
    moved = (after != before)[0, 0].nonzero().flatten() // HOP_LENGTH
    assert int(moved.min()) > 0 and int(moved.max()) < frames - 1  # the reach fits in the input
    return max(centre - int(moved.min()), int(moved.max()) - centre)


# ---------------------------------------------------------------------------------------------
# The fast inference layout and chunking


@pytest.mark.parametrize(
    "cfg", [NARROW_HIFIGAN, TINY_HIFIGAN, SOURCE_HIFIGAN], ids=["v2-layout", "tiny", "source"]
)
@pytest.mark.parametrize("tile_bytes", [TILE_BYTES, 1], ids=["default-tiles", "smallest-tiles"])
def test_inference_generator_computes_the_generator(
    cfg: HiFiGANConfig, tile_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's path for every stage (the compiled kernel's own tests are in test_native.py)."""
    generator = unit_gain_(Generator(cfg, weight_norm=False)).eval()
    fast_generator = InferenceGenerator(generator, tile_bytes=tile_bytes, native=False)
    calls: list[int] = []
    resblocks = InferenceGenerator._resblocks

    def counted(blocks: torch.nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[-1])
        return resblocks(blocks, x)

    monkeypatch.setattr(InferenceGenerator, "_resblocks", staticmethod(counted))
    mel = random_mel(40).unsqueeze(0)
    with torch.inference_mode():
        reference = generator(mel)
        fast = fast_generator(mel)
    assert fast.shape == reference.shape == (1, 1, 40 * HOP_LENGTH)
    assert reference.std() > 0.05  # a real signal, so the comparison means something
    torch.testing.assert_close(fast, reference, atol=2e-5, rtol=1e-4)
    stages = len(cfg.upsample_rates)
    if tile_bytes == 1:  # tiles of `halo` samples: the later stages run in many tiles
        assert len(calls) > 4 * stages and min(calls) <= 3 * fast_generator.halo
    else:  # these short activations fit in one tile
        assert len(calls) == stages


@pytest.mark.parametrize(
    "cfg", [NARROW_HIFIGAN, TINY_WIDE_HIFIGAN, TINY_HIFIGAN], ids=["v2-layout", "tiny-wide", "tiny"]
)
def test_hifigan_context_covers_the_receptive_field(cfg: HiFiGANConfig) -> None:
    generator = unit_gain_(Generator(cfg, weight_norm=False))
    reach = reach_in_frames(generator, 64)
    assert reach < hifigan_vocoder.receptive_field_frames(cfg) <= reach + 6
    # Channels do not change the receptive field: the narrow layout stands for the real V2.
    if cfg is NARROW_HIFIGAN:
        assert hifigan_vocoder.receptive_field_frames(
            HiFiGANConfig()
        ) == hifigan_vocoder.receptive_field_frames(cfg)


def test_bigvgan_context_covers_the_receptive_field() -> None:
    # The released layout (kernels, rates, dilations) with 24x fewer channels: same receptive field.
    narrow = BigVGANConfig(upsample_initial_channel=64)
    torch.manual_seed(0)
    network = unit_gain_(BigVGAN(narrow))
    with torch.no_grad():
        network.conv_post.weight.mul_(1e-2)  # keep the output inside the final clamp
    reach = reach_in_frames(network, 60)
    context = bigvgan_vocoder.receptive_field_frames(narrow)
    assert reach < context <= reach + 12
    assert bigvgan_vocoder.receptive_field_frames(BigVGANConfig()) == context


@pytest.mark.parametrize("cfg", [TINY_WIDE_HIFIGAN, SOURCE_HIFIGAN], ids=["plain", "source"])
def test_chunked_60_s_equals_single_pass(cfg: HiFiGANConfig) -> None:
    # with the excitation, each chunk continues the oscillators' phases where the last one stopped
    vocoder = hifigan_vocoder_for(cfg)
    frames = 60 * SAMPLE_RATE // HOP_LENGTH
    mel = random_mel(frames, seed=1)
    raw = in_fresh_thread(lambda: vocoder.network(mel.unsqueeze(0)))[0, 0]  # one pass
    single = match_to_mel(raw, mel).numpy()  # level-matched in one pass too
    assert single.shape == (frames * HOP_LENGTH,) and single.std() > 0.01
    for chunk in (None, 97):  # default (split among threads), and many seams
        chunked = vocoder.vocode(mel, chunk_frames=chunk)
        assert chunked.dtype == np.float32 and chunked.shape == single.shape
        np.testing.assert_allclose(chunked, single, atol=2e-5, rtol=0)
    # The seam region itself, sample by sample: no step, no click.
    seam = 97 * HOP_LENGTH
    np.testing.assert_allclose(chunked[seam - 256 : seam + 256], single[seam - 256 : seam + 256], atol=2e-5)


def test_vocoding_level_matches_the_networks_output_to_its_mel() -> None:
    vocoder = hifigan_vocoder_for(TINY_HIFIGAN)
    mel = random_mel(200)
    raw = in_fresh_thread(lambda: vocoder.network(mel.unsqueeze(0)))[0, 0]
    vocoded = torch.from_numpy(vocoder.vocode(mel))

    def mel_error(audio: torch.Tensor) -> float:
        return float((log_mel_spectrogram(audio) - mel).abs().mean())

    assert mel_error(vocoded) < 0.5 * mel_error(raw)
    # what the benchmarks measure matching against: the network alone, chunked or not
    for chunk in (None, 64):
        alone = vocoder.vocode(mel, chunk_frames=chunk, level_matched=False)
        np.testing.assert_allclose(alone, raw.numpy(), atol=2e-5, rtol=0)


def test_bigvgan_chunked_equals_single_pass(tmp_path: Path) -> None:
    vocoder = load_bigvgan_vocoder(write_folder(tmp_path / "bigvgan", nvidia_files()))
    assert isinstance(vocoder, BigVGANVocoder) and vocoder.kind == "bigvgan"
    mel = random_mel(300, seed=2)
    single = match_to_mel(in_fresh_thread(lambda: vocoder.network(mel.unsqueeze(0)))[0, 0], mel).numpy()
    assert single.std() > 0.01  # a real signal, so the comparison means something
    chunked = vocoder.vocode(mel, chunk_frames=64)
    np.testing.assert_allclose(chunked, single, atol=2e-5, rtol=0)


def test_vocode_checks_its_input_and_keeps_caller_threads() -> None:
    vocoder = hifigan_vocoder_for(TINY_HIFIGAN)
    threads = torch.get_num_threads()
    audio = vocoder.vocode(random_mel(400).unsqueeze(0))  # (1, 128, T) is accepted too
    assert audio.shape == (400 * HOP_LENGTH,) and np.isfinite(audio).all()
    assert torch.get_num_threads() == threads
    assert vocoder.vocode(random_mel(0)).shape == (0,)
    with pytest.raises(ValueError, match="expected a"):
        vocoder.vocode(torch.zeros(80, 10))
    with pytest.raises(ValueError, match="chunk_frames"):
        vocoder.vocode(random_mel(10), chunk_frames=0)


def flushing_denormals() -> bool:
    return float(torch.tensor(1e-39, dtype=torch.float32) * 1.0) == 0.0


def test_vocoding_flushes_denormals_without_touching_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    vocoder = hifigan_vocoder_for(TINY_HIFIGAN)
    seen: list[tuple[bool, int]] = []
    forward = vocoder._forward

    def spy(mel: torch.Tensor, phase: torch.Tensor | None) -> torch.Tensor:
        seen.append((flushing_denormals(), torch.get_num_threads()))
        return forward(mel, phase)

    monkeypatch.setattr(vocoder, "_forward", spy)
    threads = torch.get_num_threads()
    assert not flushing_denormals()
    vocoder.vocode(random_mel(20))  # too short to split: one worker with all the threads
    vocoder.vocode(random_mel(20), chunk_frames=5)
    assert seen[0] == (True, threads) and all(flag for flag, _ in seen)
    assert not flushing_denormals() and torch.get_num_threads() == threads
    if threads > 1:
        seen.clear()
        vocoder.vocode(random_mel(40 * vocoder.context_frames))  # long: split, one core per worker
        assert len(seen) == threads and all(s == (True, 1) for s in seen)


def test_threads_started_after_vocoding_keep_the_process_thread_count() -> None:
    """A worker's one-core setting must not become what later threads start with (a UI training
    job started after a preview would otherwise run on one core, and differently)."""
    from distillgan.vocoders import base

    def new_thread_count() -> int:
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return seen[0]

    vocoder = hifigan_vocoder_for(TINY_HIFIGAN)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        base._worker_pool.cache_clear()  # fresh workers, which set their count again
        vocoder.vocode(random_mel(40 * vocoder.context_frames))  # long: split, one core per worker
        assert new_thread_count() == 2
    finally:
        torch.set_num_threads(threads)


def test_vocoding_threads_live_on_between_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    vocoder = hifigan_vocoder_for(TINY_HIFIGAN)
    workers: list[set[threading.Thread]] = []
    forward = vocoder._forward

    def spy(mel: torch.Tensor, phase: torch.Tensor | None) -> torch.Tensor:
        workers[-1].add(threading.current_thread())
        return forward(mel, phase)

    monkeypatch.setattr(vocoder, "_forward", spy)
    mel = random_mel(40 * vocoder.context_frames)
    outputs = []
    for _ in range(2):
        workers.append(set())
        outputs.append(vocoder.vocode(mel, chunk_frames=vocoder.context_frames))
    assert threading.current_thread() not in workers[0]
    assert workers[0] == workers[1]  # the same threads, not new ones per call
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_a_forked_child_vocodes_with_its_own_threads() -> None:
    vocoder = hifigan_vocoder_for(TINY_HIFIGAN)
    mel = random_mel(40 * vocoder.context_frames)
    expected = vocoder.vocode(mel)  # the parent's worker threads now exist; a child has none
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=lambda: results.put(vocoder.vocode(mel)))
    child.start()
    try:
        audio = results.get(timeout=60)  # before join: the child exits once its result is read
    except queue.Empty:
        pytest.fail("vocoding in a forked child hung (it waited for the parent's threads)")
    finally:
        child.kill()
        child.join()
    np.testing.assert_array_equal(audio, expected)


# ---------------------------------------------------------------------------------------------
# The per-model vocoder in a model file


def test_loads_the_model_files_vocoder(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={"seed": 3})
    vocoder = load_hifigan(path)
    assert vocoder.kind == "hifigan" and vocoder.name == "Per-model HiFi-GAN V2"
    assert not any(p.requires_grad for p in vocoder.network.parameters())
    # Same weights as the file holds, in the plain (weight_norm=False) generator.
    with h5py.File(path) as f:
        stored = torch.from_numpy(f["vocoder/generator"]["conv_pre.weight"][()])
    torch.testing.assert_close(vocoder.generator.conv_pre.weight, stored, atol=0, rtol=0)
    reference = build_generator(TINY_HIFIGAN, vocoder.generator.state_dict())
    mel = random_mel(30)
    with torch.inference_mode():
        expected = match_to_mel(reference(mel.unsqueeze(0))[0, 0], mel).numpy()
    np.testing.assert_allclose(vocoder.vocode(mel), expected, atol=2e-5)


def test_loaded_vocoder_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={})
    first = load_hifigan(path)
    assert load_hifigan(path) is first
    assert load_hifigan(str(path), "cpu") is first
    time.sleep(0.01)
    write_model_file(path, vocoder={"seed": 1})  # atomic replace: a new file version
    second = load_hifigan(path)
    assert second is not first
    assert not torch.equal(second.generator.conv_pre.weight, first.generator.conv_pre.weight)


def test_model_without_vocoder(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "bare.distillgan")
    assert read_vocoder_info(path) is None
    with pytest.raises(VocoderUnavailableError, match="'bare' has no per-model vocoder"):
        load_hifigan(path)


def set_attr(path: Path, name: str, value: object) -> None:
    with h5py.File(path, "r+") as f:
        f["vocoder"].attrs[name] = json.dumps(value)


def test_foreign_or_damaged_vocoder_stage_is_one_clear_error(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={})
    set_attr(path, "type", "wavenet")
    with pytest.raises(ModelFileError, match="type 'wavenet'"):
        read_vocoder_info(path)
    set_attr(path, "type", "hifigan_v2")
    set_attr(path, "status", "weird")
    with pytest.raises(ModelFileError, match="damaged"):
        read_vocoder_info(path)
    set_attr(path, "status", "complete")
    set_attr(path, "config", json.dumps({"n_mels": 80}))
    with pytest.raises(ModelFileError, match=r"vocoder config stored in .* is unusable: .*n_mels"):
        load_hifigan(path)


def test_weights_not_matching_the_config_are_refused(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={})
    set_attr(
        path,
        "config",
        json.dumps({**json.loads(json.dumps(TINY_HIFIGAN.__dict__)), "resblock_kernel_sizes": [5]}),
    )
    with pytest.raises(ModelFileError, match="does not match this network"):
        load_hifigan(path)


@pytest.mark.parametrize(
    "load",
    [load_hifigan, lambda path: read_starting_weights(path, "model m")],
    ids=["vocoding", "fine-tuning from it"],
)
def test_a_config_that_does_not_fit_the_weights_is_refused_before_anything_is_built(
    tmp_path: Path, load: Callable[[Path], object]
) -> None:
    # a valid config of 55 M parameters (222 MB) over the tiny weights: the shapes it implies are
    # compared with the stored ones before a single weight is allocated
    path = write_model_file(tmp_path / "m.distillgan", vocoder={})
    set_attr(path, "config", json.dumps({**HiFiGANConfig().__dict__, "upsample_initial_channel": 1024}))
    with address_space_limit(64 * 2**20), pytest.raises(ModelFileError, match="does not match this network"):
        load(path)


@pytest.mark.parametrize(
    ("divisor", "message"),
    [(0, "discriminator_channel_divisor' must be between"), (16, "does not match this network")],
)
def test_stored_discriminators_are_checked_against_their_config_before_anything_is_built(
    tmp_path: Path, divisor: int, message: str
) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={})
    stored = Section(attrs={"discriminator_channel_divisor": divisor}, tensors={"conv.weight": torch.ones(3)})
    with ModelLock(path, owner="test") as lock:
        write_model(path, {"vocoder_discriminators": stored}, lock=lock)
    with pytest.raises(ModelFileError, match=message):
        read_starting_weights(path, "model m")


@pytest.mark.parametrize(
    ("status", "epochs", "error", "bigvgan", "ready", "warned"),
    [
        ("complete", 40, 0.2, None, True, False),  # finished and good
        ("complete", 1, 3.8, None, False, True),  # finished as asked, but barely trained: auto skips it
        ("partial", 12, GOOD_MEL_L1, None, True, False),  # stopped early but already good
        ("partial", 5, 1.7, None, False, True),  # a cancelled few-epoch checkpoint
        ("partial", 5, None, None, False, True),  # no held-out measurement at all
        ("complete", 8, None, None, False, True),
        ("complete", 12, 0.7, 0.9, True, False),  # beats BigVGAN on its held-out clips
        ("complete", 12, 0.2, 0.15, False, True),  # good, but BigVGAN renders the clips better
    ],
)
def test_readiness(
    status: str, epochs: int, error: float | None, bigvgan: float | None, ready: bool, warned: bool
) -> None:
    info = HiFiGANInfo(status, epochs, 40, 100, error, bigvgan, None, "prior")
    assert info.ready is ready
    assert (info.warning is not None) is warned
    if warned and bigvgan is None:
        noun = "epoch" if epochs == 1 else "epochs"
        assert info.warning == f"Trained for {epochs} {noun} — quality may be limited"
    elif warned:
        assert info.warning.startswith("BigVGAN-v2 renders this model's held-out clips better")


def test_a_file_from_before_level_matching_is_judged_as_the_network_alone_was(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={"val_mel_l1": 0.4})
    info = read_vocoder_info(path)
    assert info.level_matched and not info.ready  # 0.4 level-matched: not past its first steps
    with h5py.File(path, "r+") as f:  # as files written before level matching are
        del f["vocoder"].attrs["held_out_render"]
    info = read_vocoder_info(path)
    assert not info.level_matched and info.good_mel_l1 == GOOD_NETWORK_MEL_L1 and info.ready


def test_read_vocoder_info_from_a_file(tmp_path: Path) -> None:
    path = write_model_file(
        tmp_path / "m.distillgan",
        vocoder={"status": "partial", "epochs": 5, "total_epochs": 50, "val_mel_l1": 1.25},
    )
    info = read_vocoder_info(path)
    assert info == HiFiGANInfo("partial", 5, 50, 50, 1.25, None, None, "scratch")
    assert not info.ready


def test_auto_selection_reads_the_figure_of_the_weights_the_file_holds(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={"epochs": 8, "val_mel_l1": 0.06})
    with h5py.File(path, "r+") as f:  # no epoch beat the start: the start's weights and figure
        f["vocoder"].attrs["best_epoch"] = "0"  # attributes are JSON text
        f["vocoder"].attrs["val_mel_l1_last"] = "0.09"
    assert read_vocoder_info(path).val_mel_l1 == pytest.approx(0.06)
    with h5py.File(path, "r+") as f:  # a file from before best-epoch keeping held the last epoch's
        del f["vocoder"].attrs["best_epoch"]
    assert read_vocoder_info(path).val_mel_l1 == pytest.approx(0.09)
