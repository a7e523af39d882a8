"""Level matching: a vocoder's output brought to its mel's band levels, phase kept."""

from __future__ import annotations

import numpy as np
import torch

from distillgan.mel import SAMPLE_RATE, log_mel_spectrogram
from distillgan.vocoders.mel_match import MAX_BOOST_DB, match_to_mel

SAMPLES = 512 * 172  # 2 s


def tone(hz: float, amplitude: float = 0.3) -> torch.Tensor:
    t = torch.arange(SAMPLES, dtype=torch.float64) / SAMPLE_RATE
    return (amplitude * torch.sin(2 * np.pi * hz * t)).float()


def level_db(audio: torch.Tensor, low_hz: float, high_hz: float) -> float:
    """Energy between two frequencies, over the clip's middle second (no edge frames), dB."""
    middle = audio[SAMPLES // 4 : 3 * SAMPLES // 4].double().numpy()
    power = np.abs(np.fft.rfft(middle * np.hanning(len(middle)))) ** 2
    hz = np.fft.rfftfreq(len(middle), 1 / SAMPLE_RATE)
    return float(10 * np.log10(power[(hz >= low_hz) & (hz < high_hz)].sum() + 1e-30))


def test_audio_that_already_fits_its_mel_comes_back_unchanged() -> None:
    audio = tone(220.0) + 0.05 * torch.randn(SAMPLES, generator=torch.Generator().manual_seed(0))
    matched = match_to_mel(audio, log_mel_spectrogram(audio))
    torch.testing.assert_close(matched, audio, atol=1e-4, rtol=0)


def test_hiss_where_the_mel_is_silent_is_removed_and_the_tone_kept() -> None:
    clean = tone(220.0)
    hiss = 0.003 * torch.randn(SAMPLES, generator=torch.Generator().manual_seed(1))
    matched = match_to_mel(clean + hiss, log_mel_spectrogram(clean))
    assert level_db(matched, 2000, 20000) < level_db(clean + hiss, 2000, 20000) - 30
    assert abs(level_db(matched, 200, 240) - level_db(clean, 200, 240)) < 0.5


def test_a_band_left_short_is_raised_to_the_mels_level() -> None:
    wanted = tone(500.0) + tone(6000.0, amplitude=0.1)
    short = tone(500.0) + tone(6000.0, amplitude=0.05)  # 6 dB short at 6 kHz
    matched = match_to_mel(short, log_mel_spectrogram(wanted))
    assert abs(level_db(matched, 5800, 6200) - level_db(wanted, 5800, 6200)) < 1.0
    assert abs(level_db(matched, 450, 550) - level_db(wanted, 450, 550)) < 0.5


def test_a_raise_is_bounded() -> None:
    wanted = tone(1000.0)
    faint = wanted * 0.001  # 60 dB short: raising it all the way would only amplify noise
    matched = match_to_mel(faint, log_mel_spectrogram(wanted))
    gain = level_db(matched, 900, 1100) - level_db(faint, 900, 1100)
    assert abs(gain - MAX_BOOST_DB) < 0.5


def test_a_batch_is_matched_item_by_item() -> None:
    audio = torch.stack([tone(300.0), tone(3000.0) * 0.5])
    mel = log_mel_spectrogram(torch.stack([tone(300.0) * 0.5, tone(3000.0)]))
    together = match_to_mel(audio, mel)
    for i in range(2):
        torch.testing.assert_close(together[i], match_to_mel(audio[i], mel[i]), atol=1e-6, rtol=0)


def test_a_low_band_beside_a_right_one_is_raised_all_the_way() -> None:
    # one pass lands a 12 dB raise at 30 Hz 1.7 dB short and 80 Hz 0.6 dB over: the 2048-sample
    # window spreads each band's gain over its neighbour; the later passes correct what is left
    wanted = tone(30.0, amplitude=0.2) + tone(80.0)
    short = tone(30.0, amplitude=0.05) + tone(80.0)
    matched = match_to_mel(short, log_mel_spectrogram(wanted))
    assert abs(level_db(matched, 20, 40) - level_db(wanted, 20, 40)) < 0.5
    assert abs(level_db(matched, 70, 90) - level_db(wanted, 70, 90)) < 0.25


def test_an_offset_is_not_raised_with_the_lowest_band() -> None:
    # the network left the 30 Hz band 12 dB short and added an offset the mel cannot see: the
    # band is raised all the way; the offset's own bin (0 Hz) is not, so the offset rises only
    # by what the window spreads of it into the band's bins (to 0.016; with its bin raised too,
    # to 0.032, and a real clip's energy below 60 Hz came out 1.6 dB over the original's)
    wanted = tone(30.0, amplitude=0.2) + tone(80.0)
    offset = 0.01
    matched = match_to_mel(tone(30.0, amplitude=0.05) + tone(80.0) + offset, log_mel_spectrogram(wanted))
    assert abs(level_db(matched, 20, 40) - level_db(wanted, 20, 40)) < 0.5
    middle = matched[SAMPLES // 4 : 3 * SAMPLES // 4]
    assert offset < float(middle.mean()) < 2 * offset
