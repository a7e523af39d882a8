"""Previews (WAVs in the model's own folder, TensorBoard audio) and progress events of one run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tensorboard.backend.event_processing.event_accumulator import AUDIO, EventAccumulator

from distillgan.audio import write_audio
from distillgan.callbacks.previews import archive_previews
from distillgan.corpus import load_corpus
from distillgan.data import HOLD_OUT_FILES_FROM
from distillgan.examples import synth_pluck
from distillgan.lightning_modules.hifigan import PREVIEW_SAMPLES, VocoderDataModule
from distillgan.mel import SAMPLE_RATE
from distillgan.modelfile import ModelLock
from distillgan.progress import ProgressEvent
from distillgan.recipes import load_vocoder_config
from distillgan.training import run_dir, train_vocoder
from tests.training_runs import train_tiny_vocoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_run_reports_progress_and_previews_the_same_held_out_clips(
    vae_model: Path, tiny_corpus: Path
) -> None:
    events: list[ProgressEvent] = []
    cfg = load_vocoder_config(
        None, {"train": {"epochs": 3, "preview_interval": 2, "accelerator": "cpu"}}, recipe="vocoder_tiny"
    )
    corpus = load_corpus(tiny_corpus)
    with ModelLock(vae_model, owner="test") as lock:
        result = train_vocoder(
            corpus,
            vae_model,
            cfg,
            lock=lock,
            listener=events.append,
        )
    assert result.status == "complete" and result.steps == 24

    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and "end" in kinds[-2:]
    assert events[0].path == result.log_dir and Path(result.log_dir or "").is_relative_to(run_dir(vae_model))
    steps = [e for e in events if e.kind == "step"]
    assert steps and all(e.stage == "vocoder" and e.total_steps == 24 for e in steps)
    assert [e.step for e in steps] == sorted(e.step for e in steps)
    assert steps[-1].eta_s is not None and steps[-1].eta_s >= 0
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert all("val/mel_l1" in e.metrics and "train/g_loss" in e.metrics for e in epochs)
    # previews at the interval and at the last epoch: epochs 2 and 3, two held-out clips each
    previews = [(e.epoch, Path(e.path or "").name) for e in events if e.kind == "preview"]
    assert previews == [(epoch, f"epoch-{epoch:04d}_clip-{clip}.wav") for epoch in (2, 3) for clip in (1, 2)]

    folder = run_dir(vae_model) / "previews"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [name for _, name in previews] + ["reference_clip-1.wav", "reference_clip-2.wav"]
    )
    held_out = VocoderDataModule([f.audio for f in corpus.files], cfg.train).val_audio
    for i, clip in enumerate(held_out, start=1):
        reference, rate = sf.read(folder / f"reference_clip-{i}.wav", dtype="float32")
        preview, _ = sf.read(folder / f"epoch-0003_clip-{i}.wav", dtype="float32")
        assert rate == 44_100 and reference.shape == preview.shape == clip.shape
        np.testing.assert_allclose(reference, clip.numpy(), atol=1 / 32768 + 1e-6)
        assert np.abs(preview).max() > 0  # the vocoder's rendering, not silence
        # finished as generated clips are: starts and ends at zero, no DC offset
        assert preview[0] == preview[-1] == 0 and abs(preview.mean()) < 10 ** (-60 / 20)

    tensorboard = EventAccumulator(str(result.log_dir), size_guidance={AUDIO: 0})
    tensorboard.Reload()
    tags = set(tensorboard.Tags()["audio"])
    assert {"preview/clip-1", "preview/clip-2", "reference/clip-1", "reference/clip-2"} <= tags
    assert [a.step for a in tensorboard.Audio("preview/clip-1")] == [2, 3]
    assert {"train/g_loss", "train/d_loss", "val/mel_l1"} <= set(tensorboard.Tags()["scalars"])


def library(folder: Path, seconds: float) -> Path:
    """Enough files of ``seconds`` each for whole ones to be held out."""
    folder.mkdir()
    for i in range(HOLD_OUT_FILES_FROM + 1):
        write_audio(folder / f"take_{i}.wav", synth_pluck(seconds, seed=i, freq=110.0 * (i + 1)), SAMPLE_RATE)
    return folder


def test_a_corpus_with_held_out_files_previews_2_s_of_them_and_scores_the_same_clips(
    vae_model: Path, tmp_path: Path
) -> None:
    """Short validation clips (the tiny recipe's 0.26 s) still give previews of 2 s: the held-out
    files are unseen, so more of them costs training nothing; the score's clips stay."""
    corpus = load_corpus(library(tmp_path / "library", 2.6))
    train = {"epochs": 1, "steps_per_epoch": 2, "val_clips": 2, "warmup_steps": 0, "accelerator": "cpu"}
    cfg = load_vocoder_config(None, {"train": train}, recipe="vocoder_tiny")
    with ModelLock(vae_model, owner="test") as lock:
        train_vocoder(corpus, vae_model, cfg, lock=lock)

    datamodule = VocoderDataModule([f.audio for f in corpus.files], cfg.train)
    clip_len = cfg.train.val_clip_samples
    assert len(datamodule.held_out_files) == 1 and clip_len < SAMPLE_RATE // 2  # short scored clips
    assert [c.shape[-1] for c in datamodule.val_audio] == [clip_len, clip_len]
    assert [c.shape[-1] for c in datamodule.preview_audio] == [PREVIEW_SAMPLES]  # one per held-out file
    # the scored clips lie inside the previewed audio: the end of the same held-out file
    assert torch.equal(datamodule.preview_audio[0][-clip_len:], datamodule.val_audio[0])

    previews = run_dir(vae_model) / "previews"
    assert sorted(p.name for p in previews.iterdir()) == ["epoch-0001_clip-1.wav", "reference_clip-1.wav"]
    reference, _ = sf.read(previews / "reference_clip-1.wav", dtype="float32")
    preview, _ = sf.read(previews / "epoch-0001_clip-1.wav", dtype="float32")
    assert reference.shape == preview.shape == (PREVIEW_SAMPLES,) and PREVIEW_SAMPLES / SAMPLE_RATE > 1.99
    np.testing.assert_allclose(reference, datamodule.preview_audio[0].numpy(), atol=1 / 32768 + 1e-6)
    assert np.abs(preview).max() > 0


def test_a_held_out_file_shorter_than_2_s_is_previewed_whole(tmp_path: Path) -> None:
    corpus = load_corpus(library(tmp_path / "one-shots", 0.5))
    cfg = load_vocoder_config(recipe="vocoder_tiny")
    names = [f.path.name for f in corpus.files]
    datamodule = VocoderDataModule([f.audio for f in corpus.files], cfg.train, names)
    [held] = [f.audio for f in corpus.files if f.path.name in datamodule.held_out_files]
    [preview] = datamodule.preview_audio
    whole = len(held) // 512 * 512  # whole frames, no silence padded on
    assert preview.shape[-1] == whole < PREVIEW_SAMPLES
    np.testing.assert_array_equal(preview.numpy(), held[-whole:])

    # clips of 2 s are the previews themselves (no second rendering)
    long = load_vocoder_config(None, {"train": {"val_clip_seconds": 2.0}}, recipe="vocoder_tiny")
    datamodule = VocoderDataModule([f.audio for f in corpus.files], long.train)
    assert datamodule.preview_audio is datamodule.val_audio


def test_archive_moves_only_previews_and_references(tmp_path: Path) -> None:
    assert archive_previews(tmp_path / "missing") is None
    assert archive_previews(tmp_path) is None  # nothing to move: no empty folder either
    assert list(tmp_path.iterdir()) == []
    names = ["epoch-0003_clip-1.wav", "reference_clip-1.wav"]
    for name in [*names, "notes.txt"]:
        (tmp_path / name).write_text(name)
    first = archive_previews(tmp_path)
    (tmp_path / names[0]).write_text("again")
    second = archive_previews(tmp_path)  # in the same second: a folder of its own
    assert first and second and first != second and first.parent == second.parent == tmp_path
    assert sorted(p.name for p in first.iterdir()) == sorted(names)
    assert (first / names[0]).read_text() == names[0] and (second / names[0]).read_text() == "again"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["notes.txt"]


def test_a_fresh_run_moves_the_replaced_vocoders_previews_aside_and_a_resumed_run_keeps_them(
    vae_model: Path, tiny_corpus: Path
) -> None:
    folder = run_dir(vae_model) / "previews"
    train_tiny_vocoder(vae_model, tiny_corpus, cancel_after=10)  # epoch 1 previewed, then cancelled
    first = {p.name: p.read_bytes() for p in folder.glob("*.wav")}
    assert "epoch-0001_clip-1.wav" in first and "epoch-0002_clip-1.wav" not in first

    train_tiny_vocoder(vae_model, tiny_corpus, resume=True)
    resumed = {p.name for p in folder.iterdir()}
    assert set(first) < resumed and "epoch-0002_clip-1.wav" in resumed  # one run: nothing moved
    assert not [p for p in folder.iterdir() if p.is_dir()]
    before = {p.name: p.read_bytes() for p in folder.glob("*.wav")}

    train_tiny_vocoder(vae_model, tiny_corpus)  # fresh: this vocoder replaces the last one
    [archive] = [p for p in folder.iterdir() if p.is_dir()]
    assert archive.name.startswith("replaced-")
    assert {p.name: p.read_bytes() for p in archive.iterdir()} == before
    assert sorted(p.name for p in folder.glob("epoch-*.wav")) == [
        f"epoch-{e:04d}_clip-{c}.wav" for e in (1, 2) for c in (1, 2)
    ]
