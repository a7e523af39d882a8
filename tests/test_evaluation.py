"""Held-out fidelity figures: log-mel L1, MR-STFT and band levels."""

from __future__ import annotations

import numpy as np
import pytest

from distillgan import evaluation
from distillgan.examples import synth_noise_texture, synth_tone
from distillgan.mel import SAMPLE_RATE


def test_band_errors_of_a_quieter_copy_are_its_gain_in_every_counted_band() -> None:
    clip = synth_noise_texture(1.0, seed=3, kind="surf")
    errors = evaluation.band_level_errors(clip, clip * 10 ** (-6 / 20))
    counted = [e for e in errors if e is not None]
    assert counted and all(e == pytest.approx(-6.0, abs=1e-6) for e in counted)


def test_a_band_under_one_percent_of_the_energy_is_not_counted() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 440 * t) + 0.001 * np.sin(2 * np.pi * 5000 * t)
    rumble = tone + 0.5 * np.sin(2 * np.pi * 30 * t)  # a vocoder adding rumble where there was none
    errors = evaluation.band_level_errors(tone, rumble)
    names = [name for name, _, _ in evaluation.BANDS]
    assert errors[names.index("200-1k")] == pytest.approx(0.0, abs=0.01)
    assert errors[names.index("<60")] is None and errors[names.index("4k-10k")] is None


def test_rumble_where_the_original_has_nothing_shows_as_added_energy() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 440 * t)
    # the original's <60 Hz band is empty: its level error is not counted, the rumble is
    rumble = tone + 0.1 * np.sin(2 * np.pi * 30 * t)
    assert evaluation.added_energy_db(tone, rumble) == pytest.approx(-20.0, abs=0.1)
    assert evaluation.added_energy_db(tone, tone) < -100
    scored = evaluation.score(
        [tone.astype(np.float32)], lambda x: x + np.float32(0.1) * np.sin(2 * np.pi * 30 * t[: len(x)])
    )
    assert scored.added_worst_db == pytest.approx(-20.0, abs=0.3)  # a clip cut to whole frames


def test_a_perfect_render_scores_zero_and_a_poor_one_does_not() -> None:
    clips = [synth_tone(0.5, seed=1, freq=110.0), synth_noise_texture(0.5, seed=2, kind="rain")]
    perfect = evaluation.score(clips, lambda x: x)
    assert perfect.log_mel_l1 == pytest.approx(0.0, abs=1e-6) and perfect.bands_within == pytest.approx(0.0)
    muffled = evaluation.score(
        clips, lambda x: np.convolve(x, np.ones(32) / 32, mode="same").astype(np.float32)
    )
    assert muffled.log_mel_l1 > 0.5 and muffled.mr_stft > perfect.mr_stft
    names = [name for name, _, _ in evaluation.BANDS]
    assert muffled.band_worst_db[names.index(">10k")] < -10  # the highs are gone


def test_a_frame_rate_buzz_in_place_of_a_tone_shows_as_comb_excess() -> None:
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 330 * t)  # between the frame rate's harmonics (86.1 Hz apart)
    frame_rate = SAMPLE_RATE / 512
    buzz = sum(np.sin(2 * np.pi * k * frame_rate * t) / k for k in range(1, 40))
    noise = np.random.default_rng(0).standard_normal(len(t))
    assert evaluation.comb_share_db(buzz) > -0.1  # all of it on the comb
    assert -16 < evaluation.comb_share_db(noise) < -10  # its width's share of the spectrum
    assert evaluation.score_clip(tone, buzz).comb_excess_db > 30
    assert evaluation.score_clip(tone, tone).comb_excess_db == pytest.approx(0.0)
