"""Vocoder previews in a real browser: the newest epoch's clips, each beside its original (A/B)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from playwright.sync_api import expect

from distillgan.audio import SAMPLE_RATE, write_audio
from distillgan.examples import synth_bell, synth_pluck, synth_tone
from distillgan.training import run_dir
from tests.ui.conftest import Served, _train_vae, choose, full_page_screenshot, train_per_model_vocoder


@pytest.fixture
def long_corpus(tmp_path: Path) -> Path:
    """Three 2.5 s sounds: long enough to hold out two 2 s clips and still train on the rest."""
    folder = tmp_path / "long"
    folder.mkdir()
    write_audio(folder / "pluck.wav", synth_pluck(2.5, seed=1, freq=196.0), SAMPLE_RATE)
    write_audio(folder / "bell.wav", synth_bell(2.5, seed=2, freq=523.0), SAMPLE_RATE)
    write_audio(folder / "tone.wav", synth_tone(2.5, seed=4, freq=110.0), SAMPLE_RATE)
    return folder


def test_previews_show_the_newest_epoch_beside_the_originals(page, served: Served, long_corpus: Path) -> None:
    path = served.models_dir / "ab-previews.distillgan"
    _train_vae(path, long_corpus)
    # two epochs, both previewed: the page must show epoch 2's clips only, never epoch 1's
    train_per_model_vocoder(
        path, long_corpus, epochs=2, train={"val_clips": 2, "val_clip_seconds": 2.0, "steps_per_epoch": 2}
    )
    folder = run_dir(path) / "previews"
    assert {f"epoch-0001_clip-{c}.wav" for c in (1, 2)} <= {p.name for p in folder.iterdir()}

    choose(page, "train-model", "ab-previews")
    for i in (0, 1):
        expect(page.locator(f"#reference-{i}")).to_be_visible()
        expect(page.locator(f"#reference-{i}")).to_contain_text(f"Reference · clip {i + 1}")
        expect(page.locator(f"#preview-{i}")).to_contain_text(f"Epoch 2 · clip {i + 1}")
        # side by side: the reference's row is the preview's row
        ref_box = page.locator(f"#reference-{i}").bounding_box()
        preview_box = page.locator(f"#preview-{i}").bounding_box()
        assert abs(ref_box["y"] - preview_box["y"]) < 5 and ref_box["x"] < preview_box["x"]
    expect(page.locator("#preview-pair-2")).to_be_hidden()  # two clips: two pairs
    note = page.locator("#previews-note")
    expect(note).to_contain_text("Epoch 2")
    expect(note).to_contain_text(str(folder))
    expect(note).not_to_contain_text("all the held-out audio")  # 2 s clips: nothing to excuse
    for name in ("reference_clip-1.wav", "epoch-0002_clip-1.wav"):
        assert sf.info(str(folder / name)).duration >= 1.99
    # loaded and playable: each player knows its clip's length (2 s)
    for player in ("reference-0", "preview-0", "reference-1", "preview-1"):
        expect(page.locator(f"#{player} #duration")).to_have_text("0:02")
    full_page_screenshot(page, "ab-previews.png")
