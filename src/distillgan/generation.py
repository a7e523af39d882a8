"""Turning a model into sound: seeded generation, vocoding a file, the quality badge and export.

``generate`` walks a seeded, smooth path through the VAE's latent prior, decodes it into a mel
of the requested duration and vocodes it; ``vocode_file`` vocodes the mel of an existing file,
to hear how faithful a vocoder is on known material. Both use the best available vocoder
(see :func:`vocoder_status`) and return the audio with a :class:`QualityBadge` saying what was
used and how the result measures. When auto wants BigVGAN-v2 and it cannot be had here, a model
with a vocoder of its own is rendered with that one, and the badge says why.

Export policy. Audio leaves the vocoder at 44.1 kHz. Its DC offset and anything below
:data:`HIGHPASS_HZ` are removed (a 2nd-order Butterworth high-pass run forwards and backwards:
zero phase, so transients keep their shape, and no start-up thump where a clip begins on an
offset, which a one-pole DC blocker would leave). It is then resampled to the requested rate
with the project's one resampler (``distillgan.audio.resample``) and gets 5 ms raised-cosine
fades at both ends, so it starts and ends at exactly zero and cutting it to the exact duration
leaves no click; what the high-pass leaves of the mean (a short clip's lowest partials) is
taken out under the same envelope, so the exported clip's mean is zero. ``loudness_lufs`` asks
for loudness normalisation to that integrated loudness (ITU-R BS.1770, measured with
pyloudnorm). Export never clips: when the signal peaks above 0 dBFS (level matching, the
resampler's overshoot or normalisation can do that), the whole clip is scaled down so its peak
sits at :data:`EXPORT_CEILING_DBFS`, and the badge reports the gain. No limiter, nothing else.
``clipped_samples`` counts the samples the vocoder's network delivered at, or within 0.1 dB of,
full scale (``distillgan.vocoders.base.Rendering``), before level matching: what matching lifts
past full scale is a gain, which export takes back whole, not clipping; what the network
clipped stays clipped whatever matching does to its level. The badge measures what is written:
integrated loudness, peak, and the offset that was removed, and says plainly when the vocoder
delivered mostly offset or the clip is near silence.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyloudnorm
import torch
from scipy.signal import butter, sosfiltfilt

from distillgan import config as cfg_lib
from distillgan.audio import load_audio, resample, write_audio
from distillgan.errors import ConfigError, DistillganError, ModelFileError, VocoderUnavailableError
from distillgan.filecache import FileVersion, model_file_version, once_per_file_version
from distillgan.mel import HOP_LENGTH, N_FFT, SAMPLE_RATE, log_mel_spectrogram
from distillgan.modelfile import model_name, open_model, vae_record
from distillgan.networks.vae import CORPUS_LIMITS, NO_LIMIT, MelVAE, decode_trajectory, latent_trajectory
from distillgan.progress import epochs_done
from distillgan.recipes import VAEConfig
from distillgan.vocoders.base import Vocoder
from distillgan.vocoders.bigvgan import BigVGANVocoder, load_bigvgan_vocoder
from distillgan.vocoders.bigvgan_weights import BigVGANUnavailableError
from distillgan.vocoders.choices import (
    BIT_DEPTH_NAMES,
    BIT_DEPTHS,
    DEFAULT_DURATION_S,
    MAX_DURATION_S,
    MAX_SEED,
    MIN_DURATION_S,
    SAMPLE_RATES,
    SUBTYPES,
    VOCODER_CHOICES,
    WRITABLE_SUFFIXES,
)
from distillgan.vocoders.hifigan import (
    HiFiGANInfo,
    HiFiGANVocoder,
    load_hifigan,
    read_vocoder_info,
)

VocoderChoice = Literal["auto", "hifigan", "bigvgan"]

EXPORT_CEILING_DBFS = -0.1
FADE_S = 0.005
HIGHPASS_HZ = 10.0  # below any musical fundamental (-0.26 dB at 20 Hz), above slow offset drift
LOUDNESS_RANGE = (-60.0, 0.0)  # LUFS a clip may be normalised to
# BS.1770 integrates 400 ms blocks: a shorter clip has no integrated loudness.
LOUDNESS_BLOCK_S = 0.4
NEAR_SILENCE_DB = -50.0  # LUFS (dBFS RMS for a clip too short to meter): barely audible
DC_NOTICE_DBFS = -60.0  # a removed offset below this is not worth a word
# Mel frames per STFT block when vocoding a file (bounded memory for long inputs).
FILE_MEL_CHUNK_FRAMES = 4096
SILENCE_DBFS = -200.0
# A fresh seed stays below 2**31: short enough to read off the badge and retype, and exact in a
# browser's numbers. Any seed up to MAX_SEED may be given.
FRESH_SEED_LIMIT = 2**31
# Every generated clip's file name when no output path is given, in the CLI and the UI alike:
# the model, the seed (to hear it again) and the take (another render of that seed).
TAKE_NAME = "{model}_seed{seed}_take{take:02d}{suffix}"

DownloadProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VocoderStatus:
    """What a model offers: which vocoder ``auto`` picks and why (for CLI/UI lists and warnings)."""

    has_hifigan: bool
    hifigan_ready: bool
    hifigan_epochs: int | None
    hifigan_warning: str | None
    auto_choice: Literal["hifigan", "bigvgan"]
    auto_reason: str


@dataclass(frozen=True)
class QualityBadge:
    """What produced a clip and how it measures; ``describe()`` for people, ``to_dict()`` for JSON."""

    vocoder: Literal["hifigan", "bigvgan"]
    vocoder_name: str
    reason: str
    warning: str | None
    seed: int | None
    sample_rate: int
    bit_depth: str
    duration_s: float
    peak_dbfs: float
    clipped_samples: int
    export_gain_db: float = 0.0  # < 0 when export lowered the level so that nothing clips
    loudness_lufs: float | None = None  # integrated (BS.1770); None: shorter than 0.4 s, or silent
    removed_dc_dbfs: float = SILENCE_DBFS  # the vocoder's DC offset, removed on export
    loudness_gain_db: float = 0.0  # the gain of loudness normalisation, when asked for
    notes: tuple[str, ...] = ()  # plain words on the level: mostly offset, near silence, not normalised

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(self.notes))  # a list when read back from JSON

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        lines = [f"Vocoder: {self.vocoder_name} — {self.reason}"]
        facts = [] if self.seed is None else [f"seed {self.seed}"]
        facts += [
            f"{self.duration_s:.2f} s",
            f"{self.sample_rate} Hz",
            BIT_DEPTH_NAMES.get(self.bit_depth, self.bit_depth),
            f"peak {self.peak_dbfs:.1f} dBFS",
            "loudness not measured (shorter than 0.4 s)"
            if self.loudness_lufs is None and self.duration_s < LOUDNESS_BLOCK_S
            else "silent"
            if self.loudness_lufs is None
            else f"{self.loudness_lufs:.1f} LUFS",
            "no clipping"
            if self.clipped_samples == 0
            else f"{self.clipped_samples} sample{'s' if self.clipped_samples != 1 else ''} clipped by the vocoder",
        ]
        lines.append(" · ".join(facts))
        if self.removed_dc_dbfs > DC_NOTICE_DBFS:
            lines.append(f"A DC offset of {self.removed_dc_dbfs:.1f} dBFS was removed.")
        if self.loudness_gain_db:
            lines.append(f"Loudness normalised: {self.loudness_gain_db:+.2f} dB.")
        if self.export_gain_db < 0:
            lines.append(f"Export lowered the level by {-self.export_gain_db:.2f} dB so that nothing clips.")
        lines += self.notes
        if self.warning:
            lines.append(f"Warning: {self.warning}")
        return "\n".join(lines)


@dataclass
class Generation:
    audio: np.ndarray  # float32 mono at badge.sample_rate
    badge: QualityBadge


# ---------------------------------------------------------------------------------------------
# Choosing the vocoder


def _status_from_info(info: HiFiGANInfo | None) -> VocoderStatus:
    if info is None:
        return VocoderStatus(
            has_hifigan=False,
            hifigan_ready=False,
            hifigan_epochs=None,
            hifigan_warning=None,
            auto_choice="bigvgan",
            auto_reason="the model has no per-model vocoder yet, so the universal BigVGAN-v2 is used",
        )
    if info.ready:
        reason = f"the model's own vocoder: {info.comparison()}"
    elif info.bigvgan_val_mel_l1 is not None:
        reason = f"BigVGAN-v2 renders this model better: {info.comparison()}"
    else:
        trained = epochs_done(info.epochs_completed, None if info.complete else info.total_epochs)
        reason = (
            f"the model's own vocoder ({trained}) is not good enough yet, "
            f"{info.comparison()}, above {info.good_mel_l1}: the universal BigVGAN-v2 is used"
        )
    return VocoderStatus(
        has_hifigan=True,
        hifigan_ready=info.ready,
        hifigan_epochs=info.epochs_completed,
        hifigan_warning=info.warning,
        auto_choice="hifigan" if info.ready else "bigvgan",
        auto_reason=reason,
    )


def vocoder_status(model_path: Path) -> VocoderStatus:
    """Which vocoders the model offers and what ``auto`` picks, from the model file's summary only."""
    return _status_from_info(read_vocoder_info(Path(model_path)))


# Auto's reason when it wanted BigVGAN-v2 and BigVGAN-v2 cannot be had (offline, not cached)
AUTO_FALLBACK_REASON = "BigVGAN-v2 would be chosen but cannot be had here, so the model's own vocoder is used"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pick_vocoder(
    model_path: Path,
    choice: str,
    *,
    device: torch.device,
    bigvgan_dir: Path | None,
    download_progress: DownloadProgress | None,
) -> tuple[Vocoder, str, str | None]:
    """The vocoder to use, why (for the badge), and its quality warning."""
    if choice not in VOCODER_CHOICES:
        raise DistillganError(f"unknown vocoder {choice!r}: choose one of {', '.join(VOCODER_CHOICES)}")
    status = vocoder_status(model_path)
    kind = status.auto_choice if choice == "auto" else choice
    reason = status.auto_reason if choice == "auto" else "chosen explicitly"
    if kind == "hifigan":
        if not status.has_hifigan:
            name = model_name(model_path)
            raise VocoderUnavailableError(
                f"model '{name}' has no per-model HiFi-GAN vocoder: use the universal BigVGAN-v2 (vocoder "
                f"'bigvgan') or 'auto', or train one with `distillgan train vocoder {name}`"
            )
        return load_hifigan(model_path, device), reason, status.hifigan_warning
    try:
        vocoder = load_bigvgan_vocoder(bigvgan_dir, device=device, progress=download_progress)
    except VocoderUnavailableError as error:
        if choice != "auto" or not status.has_hifigan:
            raise
        # auto renders with the best vocoder that can be had here, and says what it could not have
        problem = error.problem if isinstance(error, BigVGANUnavailableError) else str(error)
        warning = "; ".join(w for w in (problem, status.hifigan_warning) if w)
        return load_hifigan(model_path, device), AUTO_FALLBACK_REASON, warning
    return vocoder, reason, None


# ---------------------------------------------------------------------------------------------
# The VAE


def load_vae(model_path: Path, device: str | torch.device = "cpu") -> MelVAE:
    """The model's VAE in eval mode on ``device``, built once per file version and device."""
    return _load_vae_cached(model_file_version(model_path), str(torch.device(device)))


@once_per_file_version(maxsize=4)
def _load_vae_cached(model_file: FileVersion, device: str) -> MelVAE:
    path = model_file.path
    reader = open_model(path)
    config = vae_record(reader).config  # a clear ModelFileError when the model has no VAE stage
    try:
        cfg = cfg_lib.from_dict(VAEConfig, config)
    except ConfigError as error:
        raise ModelFileError(f"the VAE config stored in {path} is unusable: {error}") from error
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in MelVAE(cfg.model).state_dict().items()}
    state = reader.tensors("vae", expected, prefix="weights", map_location=device, optional=CORPUS_LIMITS)
    for name in CORPUS_LIMITS:  # a VAE saved before it had limits decodes without them
        state.setdefault(name, torch.full(expected[name], NO_LIMIT, device=device))
    with torch.device("meta"):
        vae = MelVAE(cfg.model)
    vae.load_state_dict({name: t.float() for name, t in state.items()}, strict=True, assign=True)
    return vae.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Checking arguments


def check_export_args(*, sample_rate: int, bit_depth: str, loudness_lufs: float | None = None) -> None:
    """What export refuses (:func:`generate` and :func:`vocode_file`), checked up front."""
    if sample_rate not in SAMPLE_RATES:
        raise DistillganError(
            f"sample rate {sample_rate} Hz is not offered: choose {', '.join(map(str, SAMPLE_RATES))}"
        )
    if bit_depth not in BIT_DEPTHS:
        raise DistillganError(f"bit depth {bit_depth!r} is not offered: choose {', '.join(BIT_DEPTHS)}")
    low, high = LOUDNESS_RANGE
    if loudness_lufs is not None and not (
        isinstance(loudness_lufs, (int, float))
        and not isinstance(loudness_lufs, bool)
        and low <= loudness_lufs <= high
    ):
        raise DistillganError(
            f"loudness must be between {low:g} and {high:g} LUFS (e.g. -14), got {loudness_lufs!r}"
        )


def new_seed() -> int:
    """A fresh random seed: what generating without a seed uses, in every front end."""
    return secrets.randbelow(FRESH_SEED_LIMIT)


def check_generate_args(
    *, seed: int, duration_s: float, sample_rate: int, bit_depth: str, loudness_lufs: float | None = None
) -> None:
    """What :func:`generate` refuses, checked up front (one clear line per mistake)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DistillganError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    if not (
        isinstance(duration_s, (int, float))
        and not isinstance(duration_s, bool)
        and MIN_DURATION_S <= duration_s <= MAX_DURATION_S
    ):
        raise DistillganError(
            f"duration must be between {MIN_DURATION_S:g} and {MAX_DURATION_S:g} seconds, got {duration_s!r}"
        )
    check_export_args(sample_rate=sample_rate, bit_depth=bit_depth, loudness_lufs=loudness_lufs)


def _model_file(model_path: Path) -> Path:
    path = Path(model_path).expanduser()
    open_model(path)  # clear errors for a missing, foreign, damaged or too new file
    return path


# ---------------------------------------------------------------------------------------------
# Finishing and export


def _dbfs(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else SILENCE_DBFS


def _remove_dc(audio: np.ndarray) -> np.ndarray:
    """The 44.1 kHz signal without its offset and sub-audio drift (see the module docstring).

    Filtered in float64: a 10 Hz biquad's poles sit so near 1 that float32 rounding comes out
    about 60 dB under the signal, 30 dB above 16-bit resolution (an hour of audio then takes a
    few GB while it is filtered). The mirrored padding (one period of the cutoff) starts the
    filter in its steady state, so a clip that begins on an offset starts without a transient;
    odd-symmetric padding (scipy's default) turned a clip that begins at a partial's peak (a
    preview cut from a held note) into a step of twice that value, and a 10 Hz thump as loud
    as the clip's first tenth of a second.
    """
    sos = butter(2, HIGHPASS_HZ, "highpass", fs=SAMPLE_RATE, output="sos")
    padlen = min(len(audio) - 1, round(SAMPLE_RATE / HIGHPASS_HZ))
    return sosfiltfilt(sos, audio.astype(np.float64), padlen=padlen, padtype="even").astype(np.float32)


def _fade_ends(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Raised-cosine fades at both ends, then the remaining mean taken out under the same
    envelope: the clip starts and ends at exactly zero and its mean is zero."""
    n = min(len(audio) // 2, round(FADE_S * sample_rate))
    envelope = np.ones(len(audio), dtype=np.float32)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, n, endpoint=False))).astype(np.float32)
        envelope[:n] = ramp
        envelope[-n:] = ramp[::-1]
    audio = audio * envelope
    weight = float(envelope.sum(dtype=np.float64))
    if weight > 0:
        audio -= envelope * np.float32(audio.sum(dtype=np.float64) / weight)
    return audio


def _within_full_scale(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """The clip, scaled down whole when it peaks above full scale so its peak sits at
    :data:`EXPORT_CEILING_DBFS` (never clipped), and that gain in dB (0: unchanged)."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= 1.0:
        return audio, 0.0
    gain = 10 ** (EXPORT_CEILING_DBFS / 20) / peak
    return (audio * np.float32(gain)).astype(np.float32), 20 * math.log10(gain)


def finish_clip(audio: np.ndarray) -> np.ndarray:
    """A 44.1 kHz clip finished for listening as every generated clip is: no offset or sub-audio
    drift, fades at both ends, and within full scale (training previews; a vocoder's DC offset
    would click, and a level-matched render can peak above full scale)."""
    return _within_full_scale(_fade_ends(_remove_dc(audio) if audio.size > 1 else audio, SAMPLE_RATE))[0]


def _loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS (BS.1770), or None: shorter than one 400 ms block, or silent."""
    if len(audio) < LOUDNESS_BLOCK_S * sample_rate:
        return None
    value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio.astype(np.float64)))
    return value if math.isfinite(value) else None


def _rms_dbfs(audio: np.ndarray) -> float:
    return (
        _dbfs(math.sqrt(float(np.mean(np.square(audio, dtype=np.float64))))) if audio.size else SILENCE_DBFS
    )


def _finish(
    audio: np.ndarray,
    *,
    vocoder: Vocoder,
    reason: str,
    warning: str | None,
    seed: int | None,
    sample_rate: int,
    bit_depth: str,
    clipped_samples: int,
    loudness_lufs: float | None,
) -> Generation:
    """Remove the offset, resample to the export rate, fade, normalise if asked, keep the peak
    within full scale, measure, and badge."""
    raw = np.ascontiguousarray(audio, dtype=np.float32)
    if not np.isfinite(raw).all():
        raise DistillganError("the vocoder produced non-finite audio (NaN/Inf); the model weights are broken")
    offset = abs(float(raw.mean(dtype=np.float64))) if raw.size else 0.0
    notes: list[str] = []
    clean = _remove_dc(raw) if raw.size > 1 else raw
    if offset > 0 and offset > float(raw.std(dtype=np.float64)):
        notes.append(
            f"Mostly offset: the vocoder delivered a constant offset ({_dbfs(offset):.1f} dBFS) louder than "
            f"its sound ({_rms_dbfs(clean):.1f} dBFS RMS); the offset was removed."
        )
    out = _fade_ends(resample(clean, SAMPLE_RATE, sample_rate), sample_rate)
    measured = _loudness(out, sample_rate)
    level = measured if measured is not None else _rms_dbfs(out)
    quiet = level < NEAR_SILENCE_DB
    normalise_db = 0.0
    if loudness_lufs is not None:
        if len(out) < LOUDNESS_BLOCK_S * sample_rate:
            notes.append(
                f"Not normalised: a clip shorter than {LOUDNESS_BLOCK_S:g} s has no integrated loudness."
            )
        elif measured is None or quiet:
            notes.append(
                f"Not normalised to {loudness_lufs:g} LUFS: raising near silence would only raise noise."
            )
        else:
            normalise_db = loudness_lufs - measured
            out = (out * np.float32(10 ** (normalise_db / 20))).astype(np.float32)
    if quiet:
        what = f"{measured:.1f} LUFS" if measured is not None else f"{level:.1f} dBFS RMS"
        notes.append(f"Near silence: the clip measures {what}.")
    out, gain_db = _within_full_scale(out)
    peak = float(np.abs(out).max()) if out.size else 0.0
    badge = QualityBadge(
        vocoder=vocoder.kind,
        vocoder_name=vocoder.name,
        reason=reason,
        warning=warning,
        seed=seed,
        sample_rate=sample_rate,
        bit_depth=bit_depth,
        duration_s=len(out) / sample_rate,
        peak_dbfs=_dbfs(peak),
        clipped_samples=clipped_samples,
        export_gain_db=gain_db,
        loudness_lufs=_loudness(out, sample_rate),
        removed_dc_dbfs=_dbfs(offset),
        loudness_gain_db=normalise_db,
        notes=tuple(notes),
    )
    return Generation(audio=np.ascontiguousarray(out, dtype=np.float32), badge=badge)


# ---------------------------------------------------------------------------------------------
# Public API


def generate(
    model_path: Path,
    *,
    seed: int | None = None,
    duration_s: float = DEFAULT_DURATION_S,
    vocoder: VocoderChoice = "auto",
    sample_rate: int = 44100,
    bit_depth: str = "16",
    bigvgan_dir: Path | None = None,
    download_progress: DownloadProgress | None = None,
    loudness_lufs: float | None = None,
) -> Generation:
    """A new clip from the model: a seeded latent walk, decoded to a mel, then vocoded.

    The same model, seed, duration and vocoder give the same audio; without a seed a fresh one
    is drawn (:func:`new_seed`), and the badge says which. ``loudness_lufs`` normalises the clip
    to that integrated loudness (see the module docstring).
    """
    if seed is None:
        seed = new_seed()
    check_generate_args(
        seed=seed,
        duration_s=duration_s,
        sample_rate=sample_rate,
        bit_depth=bit_depth,
        loudness_lufs=loudness_lufs,
    )
    path = _model_file(model_path)
    device = _device()
    vae = load_vae(path, device)
    voc, reason, warning = _pick_vocoder(
        path, vocoder, device=device, bigvgan_dir=bigvgan_dir, download_progress=download_progress
    )

    samples = round(duration_s * SAMPLE_RATE)
    frames = math.ceil(samples / HOP_LENGTH)
    steps = math.ceil(frames / vae.time_reduction)
    z = latent_trajectory(vae.cfg.latent_dim, steps, seed=seed).to(device)
    with torch.inference_mode():
        mel = decode_trajectory(vae, z)[:, :frames]
    rendering = voc.render(mel)
    return _finish(
        rendering.audio[:samples],
        vocoder=voc,
        reason=reason,
        warning=warning,
        seed=seed,
        sample_rate=sample_rate,
        bit_depth=bit_depth,
        clipped_samples=int(np.count_nonzero(rendering.clipped[:samples])),
        loudness_lufs=loudness_lufs,
    )


def file_mel(audio: np.ndarray, *, chunk_frames: int = FILE_MEL_CHUNK_FRAMES) -> torch.Tensor:
    """The project's log-mel of a whole 44.1 kHz signal, computed block by block.

    Equal to ``log_mel_spectrogram(audio)`` but with the STFT's memory bounded by
    ``chunk_frames``: each block is given enough neighbouring samples that its frames never
    see the reflect padding used at the signal's true ends.
    """
    signal = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    frames = signal.shape[-1] // HOP_LENGTH
    if frames <= chunk_frames:
        return log_mel_spectrogram(signal)
    # A frame reaches (N_FFT - HOP) / 2 samples before its hop and as many after it; a margin of
    # whole hops keeps the block's frames aligned with the signal's.
    margin = math.ceil((N_FFT - HOP_LENGTH) / 2 / HOP_LENGTH) + 1
    blocks = []
    for start in range(0, frames, chunk_frames):
        stop = min(start + chunk_frames, frames)
        begin = max(0, start - margin)
        end = signal.shape[-1] if stop == frames else (stop + margin) * HOP_LENGTH
        mel = log_mel_spectrogram(signal[begin * HOP_LENGTH : end])
        blocks.append(mel[:, start - begin : stop - begin])
    return torch.cat(blocks, dim=-1)


def vocode_file(
    model_path: Path,
    input_path: Path,
    *,
    vocoder: VocoderChoice = "auto",
    sample_rate: int = 44100,
    bit_depth: str = "16",
    bigvgan_dir: Path | None = None,
    download_progress: DownloadProgress | None = None,
    loudness_lufs: float | None = None,
) -> Generation:
    """The mel of ``input_path`` through the model's best vocoder: hear the vocoder's fidelity.

    The input is read as mono 44.1 kHz (any format and rate the audio core reads); the output
    has the input's duration and is exported as :func:`generate`'s clips are.
    """
    check_export_args(sample_rate=sample_rate, bit_depth=bit_depth, loudness_lufs=loudness_lufs)
    path = _model_file(model_path)
    audio = load_audio(Path(input_path).expanduser())
    if len(audio) < HOP_LENGTH:
        raise DistillganError(f"{input_path} is too short to vocode ({len(audio)} samples at 44.1 kHz)")
    if not np.isfinite(audio).all():
        raise DistillganError(f"{input_path} contains NaN/Inf samples")
    device = _device()
    voc, reason, warning = _pick_vocoder(
        path, vocoder, device=device, bigvgan_dir=bigvgan_dir, download_progress=download_progress
    )
    # Zero-pad to whole hops so the output covers every input sample, then cut back.
    padded = np.pad(audio, (0, -len(audio) % HOP_LENGTH))
    rendering = voc.render(file_mel(padded))
    return _finish(
        rendering.audio[: len(audio)],
        vocoder=voc,
        reason=reason,
        warning=warning,
        seed=None,
        sample_rate=sample_rate,
        bit_depth=bit_depth,
        clipped_samples=int(np.count_nonzero(rendering.clipped[: len(audio)])),
        loudness_lufs=loudness_lufs,
    )


def write_generation(path: Path, generation: Generation, *, overwrite: bool = True) -> Path:
    """Write the clip as WAV or FLAC (by suffix) at the badge's rate and bit depth; returns the path.

    The file appears complete or not at all (temp file in the same folder, then rename). FLAC
    holds 16- or 24-bit PCM only. With ``overwrite=False`` an existing file is an error.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    badge = generation.badge
    if suffix not in WRITABLE_SUFFIXES:
        raise DistillganError(f"cannot write {path}: the output must end in .wav or .flac")
    if suffix == ".flac" and badge.bit_depth == "32f":
        raise DistillganError(
            f"cannot write {path}: FLAC holds 16- or 24-bit audio; use .wav for 32-bit float"
        )
    if badge.bit_depth not in SUBTYPES:
        raise DistillganError(f"bit depth {badge.bit_depth!r} is not offered: choose {', '.join(BIT_DEPTHS)}")
    if not path.parent.is_dir():
        raise DistillganError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise DistillganError(f"cannot write {path}: it is a folder")
    if not overwrite and path.exists():
        raise DistillganError(f"{path} already exists; choose another output path")
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}")
    try:
        write_audio(tmp, generation.audio, badge.sample_rate, subtype=SUBTYPES[badge.bit_depth])
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # soundfile reports some I/O failures as RuntimeError
        raise DistillganError(f"cannot write {path}: {error}") from error
    finally:
        tmp.unlink(missing_ok=True)
    return path


def take_path(folder: Path, model_name: str, seed: int, *, suffix: str = ".wav") -> Path:
    """Create, empty, the next numbered take of ``model_name`` and ``seed`` in ``folder``.

    The name is :data:`TAKE_NAME`; the take number follows the highest one there, and the file
    is created with ``O_EXCL``, so two generations at once (two UI tabs, two processes) never
    get the same file: the slower one takes the next number. The caller fills the file
    (:func:`write_take` does) or removes it.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DistillganError(f"cannot write a take in {folder}: the folder does not exist")
    first = TAKE_NAME.format(model=model_name, seed=seed, take=0, suffix=suffix)
    prefix = first[: first.rindex("_take") + len("_take")]  # rindex: a model may be called "my_takes"
    taken = [
        int(number)
        for entry in folder.iterdir()
        if entry.name.startswith(prefix) and (number := entry.name[len(prefix) :].split(".", 1)[0]).isdigit()
    ]
    take = max(taken, default=0) + 1
    while True:
        path = folder / TAKE_NAME.format(model=model_name, seed=seed, take=take, suffix=suffix)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            take += 1
            continue
        except OSError as error:
            raise DistillganError(f"cannot write {path}: {error.strerror or error}") from error
        return path


def write_take(folder: Path, model_name: str, generation: Generation, *, suffix: str = ".wav") -> Path:
    """Write a generated clip as a new numbered take (:func:`take_path`); never overwrites."""
    seed = generation.badge.seed
    if seed is None:
        raise DistillganError("only a generated clip (one with a seed) is written as a take")
    path = take_path(folder, model_name, seed, suffix=suffix)
    try:
        return write_generation(path, generation)  # replaces only its own empty reservation
    except BaseException:
        path.unlink(missing_ok=True)
        raise


__all__ = [
    "BIT_DEPTHS",
    "MAX_SEED",
    "SAMPLE_RATES",
    "VOCODER_CHOICES",
    "BigVGANVocoder",
    "Generation",
    "HiFiGANVocoder",
    "QualityBadge",
    "VocoderChoice",
    "VocoderStatus",
    "check_export_args",
    "check_generate_args",
    "file_mel",
    "generate",
    "load_vae",
    "new_seed",
    "take_path",
    "vocode_file",
    "vocoder_status",
    "write_generation",
    "write_take",
]
