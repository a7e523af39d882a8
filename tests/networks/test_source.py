"""The band-oscillator excitation: right frequencies from the mel alone, continuous across chunks,
and a generator extended with it starts out as the generator it extends."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from distillgan.errors import ConfigError
from distillgan.mel import HOP_LENGTH, SAMPLE_RATE, log_mel_spectrogram
from distillgan.networks.hifigan import Generator, HiFiGANConfig
from distillgan.networks.source import band_frames, excitation, start_phases
from distillgan.vocoders.prior import weight_normed
from tests.vocoders.model_files import TINY_HIFIGAN

pytestmark = pytest.mark.usefixtures("one_thread")


def tone(hz: float, seconds: float = 1.0, amplitude: float = 0.3) -> torch.Tensor:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return torch.tensor(amplitude * np.sin(2 * np.pi * hz * t), dtype=torch.float32)


@pytest.mark.parametrize("hz", [55.0, 110.0, 196.0, 329.63, 880.0, 3520.0, 7040.0])
def test_the_bands_a_tone_lights_agree_on_its_frequency_and_amplitude(hz: float) -> None:
    frequency, amplitude = band_frames(log_mel_spectrogram(tone(hz)[None]))
    frame = frequency.shape[-1] // 2
    loudest = amplitude[0, :, frame].argsort(descending=True)[:2]
    cents = 1200 * np.log2(frequency[0, loudest, frame].numpy() * SAMPLE_RATE / hz)
    # the two loudest bands carry the tone at its own pitch, within a cent (the frame-rate comb's
    # nearest line is 86 Hz away; the raw centroid was up to 40 cents off below 300 Hz)
    assert np.abs(cents).max() < 1.0, cents
    assert 0.2 < float(amplitude[0, loudest[0], frame]) < 0.45  # about the tone's 0.3


def test_a_steady_tones_excitation_sits_at_the_tone_not_on_the_frame_rate_comb() -> None:
    hz = 329.63  # between the comb's 86.1 Hz multiples 258.4 and 344.5
    source = excitation(log_mel_spectrogram(tone(hz, 2.0)[None]), channels=4)[0].sum(0).numpy()
    middle = source[SAMPLE_RATE // 2 : 3 * SAMPLE_RATE // 2]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    freqs = np.fft.rfftfreq(len(middle), 1 / SAMPLE_RATE)
    assert abs(freqs[spectrum.argmax()] - hz) < 2.0
    periodic = np.abs(middle[HOP_LENGTH:] - middle[:-HOP_LENGTH]).max()
    assert periodic > 0.5 * np.abs(middle).max()  # far from repeating every hop


def test_a_chunk_started_from_the_whole_mels_phases_continues_it_exactly() -> None:
    mel = log_mel_spectrogram(torch.randn(2, 64 * HOP_LENGTH) * 0.1)
    whole = excitation(mel, channels=4)
    phases = start_phases(mel)
    chunk = excitation(mel[..., 20:40], channels=4, phase=phases[..., 20])
    # all but the chunk's last frame, whose amplitude ramps towards a frame the chunk lacks
    torch.testing.assert_close(chunk[..., : 19 * HOP_LENGTH], whole[..., 20 * HOP_LENGTH : 39 * HOP_LENGTH])
    assert not torch.allclose(excitation(mel[..., 20:40], channels=4), chunk)  # phase 0 is another start


def test_neighbouring_bands_go_to_different_channels() -> None:
    mel = torch.full((1, 128, 4), -20.0)
    mel[0, 41] = 0.0  # one band only
    source = excitation(mel, channels=4)[0]
    assert source[41 % 4].abs().max() > 0.1
    assert all(source[c].abs().max() < 1e-6 for c in range(4) if c != 41 % 4)


def test_a_generator_without_the_source_extends_to_one_with_it_unchanged() -> None:
    plain_cfg = TINY_HIFIGAN
    source_cfg = dataclasses.replace(plain_cfg, source_channels=4)
    torch.manual_seed(0)
    plain = Generator(plain_cfg)
    extended = Generator(source_cfg)
    missing, unexpected = extended.load_state_dict(
        weight_normed(plain.inference_state_dict(), plain_cfg), strict=False
    )
    assert not unexpected and missing and all(key.startswith("source_convs.") for key in missing)
    mel = log_mel_spectrogram(torch.randn(1, 16 * HOP_LENGTH) * 0.1)
    with torch.no_grad():
        torch.testing.assert_close(extended(mel), plain(mel))
    # and the source convs, not weight-normed, learn from the first step
    extended(mel).square().mean().backward()
    assert all(conv.weight.grad.abs().sum() > 0 for conv in extended.source_convs)


@pytest.mark.parametrize("channels", [3, 9, -1])
def test_source_channels_must_divide_the_bands(channels: int) -> None:
    with pytest.raises(ConfigError, match="source_channels"):
        HiFiGANConfig(source_channels=channels).validate()


def test_a_stored_config_written_before_the_source_reads_as_without_it() -> None:
    from distillgan.config import from_dict, to_dict

    stored = to_dict(HiFiGANConfig())
    del stored["source_channels"]
    assert from_dict(HiFiGANConfig, stored).source_channels == 0
