"""Run length and time estimate (distillgan.estimate): the length is the one the run trains, the
time comes from measured steps of the real module, and epochs 0 means the recipe decides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from distillgan import estimate as estimate_module
from distillgan.corpus import load_corpus
from distillgan.estimate import (
    ASK_ABOVE_S,
    TIMED_ABOVE_STEPS,
    RunEstimate,
    RunLength,
    estimate_run,
    run_length,
)
from distillgan.modelfile import ModelLock
from distillgan.progress import METRICS, ProgressEvent
from distillgan.recipes import VAEConfig, VocoderConfig, load_vae_config, load_vocoder_config
from distillgan.training import train_vae, train_vocoder, vae_epochs_for, vocoder_epochs_for
from tests.robustness.harness import TINY_VAE

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vocoder(**train: Any) -> VocoderConfig:
    """The tiny vocoder recipe, ``train`` keys overridden, on a CPU whatever this machine has."""
    return load_vocoder_config(None, {"train": {**train, "accelerator": "cpu"}}, recipe="vocoder_tiny")


def tiny_vae(**train: Any) -> VAEConfig:
    """The tiny VAE recipe, ``train`` keys overridden, on a CPU whatever this machine has."""
    return load_vae_config(None, {**TINY_VAE, "train": {**TINY_VAE["train"], **train, "accelerator": "cpu"}})


@pytest.fixture
def every_run_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny runs are timed too (a real run that short is not: see the test of that below)."""
    monkeypatch.setattr(estimate_module, "TIMED_ABOVE_STEPS", 0)


def test_the_vocoder_estimate_names_the_length_the_run_trains_and_measures_both_kinds_of_step(
    tiny_corpus: Path, models_dir: Path, every_run_timed: None
) -> None:
    corpus = load_corpus(tiny_corpus)
    cfg = tiny_vocoder(epochs=1, init="scratch")
    estimate = estimate_run("vocoder", cfg, corpus)
    length = estimate.length
    assert (length.epochs, length.warmup_steps, length.adaptive) == (1, cfg.train.warmup_steps, False)
    # the recipe has a reconstruction warm-up: its (generator-only) steps are measured on their own
    assert estimate.warmup_step_s is not None and estimate.warmup_step_s > 0
    assert estimate.step_s > 0
    assert estimate.seconds == pytest.approx(
        length.warmup_steps * estimate.warmup_step_s
        + (length.total_steps - length.warmup_steps) * estimate.step_s
    )
    assert estimate.device == "cpu" and "on cpu" in estimate.text()
    assert (
        f"1 epoch × {length.steps_per_epoch} generator steps = {length.total_steps} steps" in estimate.text()
    )

    events: list[tuple[float, ProgressEvent]] = []
    path = models_dir / "est.distillgan"
    with ModelLock(path, owner="test") as lock:
        result = train_vocoder(
            corpus, path, cfg, lock=lock, listener=lambda e: events.append((time.monotonic(), e))
        )
    assert (result.total_epochs, result.steps) == (length.epochs, length.total_steps)
    # every figure the run reports (its TensorBoard tags) has its one label (see tests/cli/test_logs.py)
    assert {k for _, e in events for k in e.metrics} - {"epoch"} <= METRICS.keys()
    # a measurement, not a constant: the training steps took about what was estimated
    started = next(t for t, e in events if e.kind == "start")
    ended = next(t for t, e in events if e.kind == "end")
    assert estimate.seconds / 10 < ended - started < estimate.seconds * 10


def test_the_vae_estimate_names_the_length_the_run_trains(
    tiny_corpus: Path, models_dir: Path, every_run_timed: None
) -> None:
    corpus = load_corpus(tiny_corpus)
    cfg = tiny_vae()
    estimate = estimate_run("vae", cfg, corpus)
    assert estimate.warmup_step_s is None and estimate.step_s > 0
    assert estimate.seconds == pytest.approx(estimate.length.total_steps * estimate.step_s)
    path = models_dir / "est.distillgan"
    events: list[ProgressEvent] = []
    with ModelLock(path, owner="test") as lock:
        result = train_vae(corpus, path, cfg, lock=lock, listener=events.append)
    assert (result.total_epochs, result.steps) == (estimate.length.epochs, estimate.length.total_steps)
    assert {k for e in events for k in e.metrics} - {"epoch"} <= METRICS.keys()


def test_epochs_zero_means_the_recipe_decides(tiny_corpus: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    adaptive = tiny_vocoder(epochs=0)
    length = run_length("vocoder", adaptive, corpus, epochs=0)
    assert length.adaptive and "(adapted to the corpus)" in length.text()
    assert length.epochs == vocoder_epochs_for(length.steps_per_epoch, adaptive.train.warmup_steps)
    assert run_length("vocoder", adaptive, corpus, epochs=None) == length
    # a recipe's own epochs decide when nothing else is asked for; an asked-for number wins
    fixed = tiny_vocoder(epochs=2)
    assert run_length("vocoder", fixed, corpus, epochs=0).epochs == 2
    assert run_length("vocoder", fixed, corpus, epochs=7).epochs == 7
    vae = tiny_vae(epochs=0)
    vae_length = run_length("vae", vae, corpus)
    assert vae_length.adaptive and vae_length.epochs == vae_epochs_for(vae_length.steps_per_epoch)


def test_a_resumed_run_past_its_warmup_counts_only_the_steps_left(
    tiny_corpus: Path, every_run_timed: None
) -> None:
    corpus = load_corpus(tiny_corpus)
    cfg = tiny_vocoder(epochs=3)
    per_epoch = run_length("vocoder", cfg, corpus).steps_per_epoch
    estimate = estimate_run("vocoder", cfg, corpus, steps_done=per_epoch + 1)
    assert estimate.length.steps_left == 2 * per_epoch - 1 and estimate.length.warmup_steps_left == 0
    assert estimate.warmup_step_s is None  # no warm-up step left: none measured
    assert estimate.seconds == pytest.approx((2 * per_epoch - 1) * estimate.step_s)
    assert f"{2 * per_epoch - 1} left" in estimate.text()


def test_a_run_over_an_hour_needs_a_confirmation() -> None:
    length = RunLength("vocoder", epochs=10, steps_per_epoch=100, warmup_steps=200)
    # 200 warm-up steps at 1 s, 800 adversarial ones at 4.25 s: exactly an hour
    hour = RunEstimate(length, step_s=4.25, warmup_step_s=1.0, device="cpu", scale=4)
    assert hour.seconds == pytest.approx(ASK_ABOVE_S) and not hour.needs_confirmation
    longer = RunEstimate(length, step_s=4.26, warmup_step_s=1.0, device="cpu", scale=4)
    assert longer.needs_confirmation
    assert "about 1 h" in longer.text() and "1/4 the size, scaled up" in longer.text()
    # the UI's ETA wording (distillgan.corpus.format_duration), e.g. the "56 h 55 min"
    long = RunEstimate(length, step_s=(56 * 3600 + 55 * 60 - 200) / 800, warmup_step_s=1.0, device="cpu")
    assert "about 56 h 55 min on cpu (measured on steps of the run's size;" in long.text()


def test_a_corpus_with_one_batch_an_epoch_is_still_measured(tmp_path: Path, every_run_timed: None) -> None:
    # one short file: each VAE epoch is a single batch, fewer than the measurement needs
    from distillgan.audio import write_audio
    from distillgan.examples import synth_pluck

    write_audio(tmp_path / "one.wav", synth_pluck(0.5, seed=1), 44_100)
    cfg = tiny_vae(batch_size=64)
    estimate = estimate_run("vae", cfg, load_corpus(tmp_path))
    assert estimate.step_s > 0 and estimate.seconds > 0


def test_a_run_about_as_short_as_its_measurement_is_not_timed(tiny_corpus: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    cfg = tiny_vocoder(epochs=1)
    short = estimate_run("vocoder", cfg, corpus)
    assert short.length.steps_left <= TIMED_ABOVE_STEPS
    assert short.seconds is None and not short.needs_confirmation
    assert short.text() == (
        f"Run length: {short.length.text()}. Not timed: a run this short takes about as long as measuring it."
    )
    # one more epoch than the limit allows: measured
    epochs = TIMED_ABOVE_STEPS // short.length.steps_per_epoch + 1
    longer = estimate_run("vocoder", cfg, corpus, epochs=epochs)
    assert longer.length.steps_left > TIMED_ABOVE_STEPS
    assert longer.seconds is not None and longer.seconds > 0 and "Estimated time: about" in longer.text()
