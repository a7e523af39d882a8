"""How faithful a vocoder is on held-out audio: the figures the fidelity benchmark, the end of
vocoder training (BigVGAN's score) and the README quote.

* **log-mel L1**: mean |difference| of the project's log-mel (the training validation metric);
* **MR-STFT**: auraloss's multi-resolution STFT distance with its default resolutions;
* **band levels**: the level error in dB of each band in :data:`BANDS`, counted only where the
  reference holds at least :data:`BAND_MIN_SHARE` of its energy (a band it barely has says
  nothing about fidelity, and its dB error would swamp the rest).
* **added energy**: what the estimate puts in the bands left out above (where the reference has
  almost nothing), relative to the reference's whole energy in dB: rumble under a texture, hiss
  above a low drone. Those bands' level errors say little, but what is added there is heard.
* **frame-rate comb**: how much more of the estimate's energy than the reference's sits on the
  harmonics of the mel frame rate (44 100 / 512 = 86.1 Hz). A mel vocoder's upsampling stack
  turns a one-frame shift of its input into a 512-sample shift of its output, so where the mel
  stands still (a steady partial) it can only repeat itself every frame: it buzzes at exactly
  those frequencies instead of rendering the partials in between, however long it trains
  (``benchmarks/steady_tones.py``). The failure that makes tonal sounds too quiet and off pitch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from distillgan.mel import HOP_LENGTH, SAMPLE_RATE, log_mel_spectrogram

BANDS: tuple[tuple[str, float, float], ...] = (
    ("<60", 0.0, 60.0),
    ("60-200", 60.0, 200.0),
    ("200-1k", 200.0, 1000.0),
    ("1k-4k", 1000.0, 4000.0),
    ("4k-10k", 4000.0, 10000.0),
    (">10k", 10000.0, SAMPLE_RATE / 2 + 1),
)
BAND_MIN_SHARE = 0.01


def band_energies(audio: np.ndarray) -> np.ndarray:
    """Share of a clip's energy in each of :data:`BANDS` times its total energy (one FFT)."""
    spectrum = np.abs(np.fft.rfft(np.asarray(audio, dtype=np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    return np.array([spectrum[(freqs >= lo) & (freqs < hi)].sum() for _, lo, hi in BANDS])


def band_level_errors(reference: np.ndarray, estimate: np.ndarray) -> list[float | None]:
    """Per band: estimate's level minus reference's in dB, or None where the reference has under
    :data:`BAND_MIN_SHARE` of its energy."""
    return _level_errors(band_energies(reference), band_energies(estimate))


def _level_errors(ref: np.ndarray, est: np.ndarray) -> list[float | None]:
    total = ref.sum()
    return [
        float(10 * np.log10((e + 1e-20) / r)) if total > 0 and r >= BAND_MIN_SHARE * total else None
        for r, e in zip(ref, est, strict=True)
    ]


def added_energy_db(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """The estimate's energy in the bands where the reference has under :data:`BAND_MIN_SHARE` of
    its energy, relative to the reference's whole energy (dB); None when there are none."""
    return _added_energy(band_energies(reference), band_energies(estimate))


def _added_energy(ref: np.ndarray, est: np.ndarray) -> float | None:
    total = ref.sum()
    empty = ref < BAND_MIN_SHARE * total
    if total <= 0 or not empty.any():
        return None
    return float(10 * np.log10((est[empty].sum() + 1e-20) / total))


COMB_HALF_WIDTH_HZ = 2.0


def comb_share_db(audio: np.ndarray) -> float:
    """Share of a clip's energy within ±:data:`COMB_HALF_WIDTH_HZ` of the frame rate's
    harmonics, in dB (white noise: about -13 dB; a pure frame-rate buzz: 0 dB)."""
    audio = np.asarray(audio, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    frame_rate = SAMPLE_RATE / HOP_LENGTH
    offset = np.abs(freqs - np.round(freqs / frame_rate) * frame_rate)
    total = spectrum.sum()
    return float(10 * np.log10((spectrum[offset <= COMB_HALF_WIDTH_HZ].sum() + 1e-20) / (total + 1e-20)))


@dataclass
class ClipScore:
    log_mel_l1: float
    mr_stft: float
    band_errors_db: list[float | None]
    added_db: float | None  # added_energy_db
    comb_excess_db: float  # the estimate's frame-rate comb share minus the reference's


@dataclass
class FidelityScore:
    """Means over the held-out clips, and per band the mean and worst |level error|."""

    log_mel_l1: float
    mr_stft: float
    band_mean_abs_db: list[float | None]
    band_worst_db: list[float | None]  # signed error of largest magnitude
    comb_excess_db: float  # mean over clips
    clips: list[ClipScore]

    @property
    def added_worst_db(self) -> float | None:
        """The most energy any clip's estimate adds where its reference has almost none (dB)."""
        added = [clip.added_db for clip in self.clips if clip.added_db is not None]
        return max(added) if added else None

    @property
    def bands_within(self) -> float:
        """The largest |band level error| over every counted band of every clip (dB)."""
        errors = [abs(e) for clip in self.clips for e in clip.band_errors_db if e is not None]
        return max(errors) if errors else 0.0


def fit_to_hop(audio: np.ndarray) -> np.ndarray:
    """A clip trimmed to whole mel frames (what a vocoder gives back for its mel)."""
    frames = max(1, len(audio) // HOP_LENGTH)
    out = np.zeros(frames * HOP_LENGTH, dtype=np.float32)
    out[: min(len(audio), len(out))] = audio[: len(out)]
    return out


_mr_stft = None


def score_clip(reference: np.ndarray, estimate: np.ndarray) -> ClipScore:
    global _mr_stft
    if _mr_stft is None:
        import auraloss

        _mr_stft = auraloss.freq.MultiResolutionSTFTLoss()
    n = min(len(reference), len(estimate))
    ref = torch.as_tensor(reference[:n], dtype=torch.float32)[None]
    est = torch.as_tensor(estimate[:n], dtype=torch.float32)[None]
    with torch.no_grad():
        mel_l1 = float(F.l1_loss(log_mel_spectrogram(est), log_mel_spectrogram(ref)))
        mr_stft = float(_mr_stft(est[:, None], ref[:, None]))
    comb = comb_share_db(estimate[:n]) - comb_share_db(reference[:n])
    ref_bands, est_bands = band_energies(reference[:n]), band_energies(estimate[:n])  # one FFT each
    return ClipScore(
        mel_l1, mr_stft, _level_errors(ref_bands, est_bands), _added_energy(ref_bands, est_bands), comb
    )


def score(references: Sequence[np.ndarray], render: Callable[[np.ndarray], np.ndarray]) -> FidelityScore:
    """Score ``render`` (reference clip -> its reconstruction) over held-out clips."""
    clips = []
    for reference in references:
        reference = fit_to_hop(reference)
        clips.append(score_clip(reference, np.asarray(render(reference), dtype=np.float32)))
    mean_abs, worst = [], []
    for band in range(len(BANDS)):
        errors = [c.band_errors_db[band] for c in clips if c.band_errors_db[band] is not None]
        mean_abs.append(float(np.mean(np.abs(errors))) if errors else None)
        worst.append(max(errors, key=abs) if errors else None)
    return FidelityScore(
        log_mel_l1=float(np.mean([c.log_mel_l1 for c in clips])),
        mr_stft=float(np.mean([c.mr_stft for c in clips])),
        band_mean_abs_db=mean_abs,
        band_worst_db=worst,
        comb_excess_db=float(np.mean([c.comb_excess_db for c in clips])),
        clips=clips,
    )
