"""Previews (WAVs in the model's own folder, TensorBoard audio) and progress events of one run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tensorboard.backend.event_processing.event_accumulator import AUDIO, EventAccumulator

from distillgan.audio import load_corpus
from distillgan.lightning_modules.hifigan import VocoderDataModule, load_vocoder_config
from distillgan.modelfile import ModelLock
from distillgan.progress import ProgressEvent
from distillgan.training import TrainerOptions, run_dir, train_vocoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_run_reports_progress_and_previews_the_same_held_out_clips(
    vae_model: Path, tiny_corpus: Path
) -> None:
    events: list[ProgressEvent] = []
    cfg = load_vocoder_config(None, {"train": {"epochs": 3, "preview_interval": 2}}, recipe="vocoder_tiny")
    corpus = load_corpus(tiny_corpus)
    with ModelLock(vae_model, owner="test") as lock:
        result = train_vocoder(
            corpus,
            vae_model,
            cfg,
            lock=lock,
            listener=events.append,
            options=TrainerOptions(accelerator="cpu"),
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

    tensorboard = EventAccumulator(str(result.log_dir), size_guidance={AUDIO: 0})
    tensorboard.Reload()
    tags = set(tensorboard.Tags()["audio"])
    assert {"preview/clip-1", "preview/clip-2", "reference/clip-1", "reference/clip-2"} <= tags
    assert [a.step for a in tensorboard.Audio("preview/clip-1")] == [2, 3]
    assert {"train/g_loss", "train/d_loss", "val/mel_l1"} <= set(tensorboard.Tags()["scalars"])
