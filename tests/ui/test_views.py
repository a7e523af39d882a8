"""What the tabs show, as plain data: status text, chart frames, previews, badges, form numbers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from distillgan.audio import write_audio
from distillgan.errors import ConfigError, VocoderUnavailableError
from distillgan.generation import QualityBadge, VocoderStatus
from distillgan.progress import METRICS, ProgressEvent
from distillgan.training import RunResult
from distillgan.ui import generate_tab, views
from distillgan.ui.jobs import JobView


def job_view(**changes: object) -> JobView:
    base = {
        "id": 1,
        "stage": "vocoder",
        "model_name": "bells",
        "state": "running",
        "version": 1,
        "resumed": False,
        "cancel_requested": False,
        "last": None,
        "points": (),
        "log_dir": None,
        "saved": None,
        "result": None,
        "error": None,
        "notes": (),
    }
    return JobView(**{**base, **changes})  # type: ignore[arg-type]


def result(status: str, epoch: int) -> RunResult:
    return RunResult(status, status != "complete", epoch, epoch, 10, 170, Path("m.distillgan"), None)


def test_status_reports_live_stats_and_the_really_saved_epoch() -> None:
    step = ProgressEvent(
        "vocoder",
        "step",
        epoch=3,
        epochs_done=3,
        total_epochs=10,
        step=40,
        total_steps=170,
        metrics={"train/g_loss": 61.25, "train/d_loss": 3.5, "train/mel_l1": 1.2},
        eta_s=95.0,
    )
    text = views.status_markdown(job_view(last=step))
    assert "Training the vocoder" in text
    # the columns and their labels are the CLI table's (progress.TABLE); no adversarial loss yet
    assert "| 3 of 10 epochs done | 40 / 170 | 61.25 | — | 3.5 | 1.2 | — | — | 1 min 35 s |" in text
    assert "| Progress | Step | G total (weighted) | G adversarial | D loss | mel error |" in text
    assert "Cancelling" in views.status_markdown(job_view(last=step, cancel_requested=True))

    cancelled = job_view(state="finished", last=step, result=result("partial", 4))
    assert "**Checkpoint saved at epoch 4. Resume anytime.**" in views.status_markdown(cancelled)
    assert "| 4 of 10 epochs done |" in views.status_markdown(cancelled)
    done = views.status_markdown(job_view(state="finished", last=step, result=result("complete", 10)))
    assert "Vocoder training complete** — 10 epochs, 170 steps." in done
    saved = ProgressEvent("vocoder", "checkpoint", epoch=2, epochs_done=2, message="partial")
    failed = views.status_markdown(job_view(state="failed", error="corpus is gone", saved=saved))
    assert "Training failed:** corpus is gone" in failed
    assert "Checkpoint saved at epoch 2. Resume anytime." in failed


def test_chart_frames_thin_long_histories_but_keep_the_newest_point() -> None:
    points = (*((i, "train/adv", float(i)) for i in range(1, 2001)), (2000, "train/d_loss", 0.5))
    frame = views.chart_frame(job_view(points=points), views.LOSS_CHART)
    adv = frame[frame.series == METRICS["train/adv"].label]
    assert len(adv) <= views.CHART_POINTS + 1 and adv.step.iloc[-1] == 2000
    assert frame[frame.series == METRICS["train/d_loss"].label].value.tolist() == [0.5]
    empty = views.chart_frame(None, views.MEL_CHART)
    assert empty.empty and list(empty.columns) == ["step", "value", "series"]
    assert str(empty.step.dtype) == "int64"  # a numeric axis even before the first point


def test_previews_are_the_newest_epochs_set_each_beside_its_reference(tmp_path: Path) -> None:
    names = [
        "epoch-0002_clip-1.wav",
        "epoch-0002_clip-2.wav",
        "epoch-0004_clip-2.wav",
        "epoch-0004_clip-1.wav",
    ]
    for i, name in enumerate(names):
        write_audio(tmp_path / name, np.zeros(4410, dtype=np.float32), 44_100)
        os.utime(tmp_path / name, ns=(10**9 * (i + 1), 10**9 * (i + 1)))
    write_audio(tmp_path / "reference_clip-1.wav", np.zeros(4410, dtype=np.float32), 44_100)
    previews = views.recent_previews(tmp_path)
    # epoch 4 only, in clip order (clip 2 was written first), never mixed with epoch 2
    assert [p.label for p in previews] == ["Epoch 4 · clip 1", "Epoch 4 · clip 2"]
    assert [p.reference for p in previews] == [tmp_path / "reference_clip-1.wav", None]
    assert previews[0].reference_label == "Reference · clip 1" and previews[0].seconds == pytest.approx(0.1)
    note = views.previews_note(previews, 1, tmp_path)
    assert "Epoch 4" in note and "1 more clips" in note and "0.10 s" in note  # short clips: said
    assert views.recent_previews(tmp_path / "missing") == []
    assert "appear here" in views.previews_note([], 4, None)


def test_form_numbers() -> None:
    assert views.parse_number("  ", "Epochs", integer=True) is None
    assert views.parse_number("1e-3", "Learning rate") == 0.001
    assert views.parse_number("16", "Batch size", integer=True) == 16
    with pytest.raises(ConfigError, match=r"Batch size must be a whole number, got '16\.5'"):
        views.parse_number("16.5", "Batch size", integer=True)
    with pytest.raises(ConfigError, match="Learning rate must be a number, got 'fast'"):
        views.parse_number("fast", "Learning rate")


def test_vocoder_choices_follow_the_model() -> None:
    assert generate_tab.vocoder_choices(None) == [("Auto", "auto"), ("BigVGAN Universal", "bigvgan")]
    status = VocoderStatus(
        True, False, 2, "Trained for 2 epochs — quality may be limited", "bigvgan", "unfinished"
    )
    assert [c[1] for c in generate_tab.vocoder_choices(status)] == ["auto", "hifigan", "bigvgan"]
    info = generate_tab.vocoder_info(status)
    assert "Auto picks the BigVGAN Universal: unfinished." in info
    assert "<small>⚠ Per-model HiFi-GAN: Trained for 2 epochs" in info


def test_badge_shows_the_vocoder_first_and_where_the_file_is() -> None:
    badge = QualityBadge(
        "hifigan", "Per-model HiFi-GAN V2", "chosen explicitly", None, 7, 48000, "24", 1.5, -3.0, 0
    )
    text = generate_tab.badge_markdown(badge, Path("/out/a.wav"))
    assert text.startswith("**Vocoder: Per-model HiFi-GAN V2** — chosen explicitly  \n")
    assert "seed 7" in text and "48000 Hz" in text and text.endswith("Saved to `/out/a.wav`")


def test_bigvgan_download_progress_and_failure_reach_the_page(served, vae_model, monkeypatch) -> None:
    calls: list[tuple[object, str]] = []

    def fake_generate(path: Path, **kwargs: object) -> object:
        kwargs["download_progress"]("bigvgan_generator.pt", 10, 40)  # type: ignore[operator]
        raise VocoderUnavailableError("the hub stopped answering: run again to retry")

    monkeypatch.setattr(generate_tab, "generate", fake_generate)
    audio, badge, error, retry, reuse, seed = served.app.generate.on_generate(
        vae_model.stem, 0, 1.0, 44100, "16", "bigvgan", progress=lambda p, desc, unit: calls.append((p, desc))
    )
    assert seed is None and reuse == {"__type__": "update", "visible": False}  # nothing to reuse
    assert calls == [((10, 40), "Downloading BigVGAN-v2 bigvgan_generator.pt (first use only)")]
    assert audio is None and badge == ""
    assert error == {
        "__type__": "update",
        "value": "⚠ the hub stopped answering: run again to retry",
        "visible": True,
    }
    assert retry == {"__type__": "update", "visible": True}
