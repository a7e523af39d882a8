"""The audio core: reading, resampling and writing sound files.

Everything that enters the project passes through here and comes out as mono float32 at
44.1 kHz (the canonical mel's rate). Which files make a corpus, and why a file is skipped, is
:mod:`distillgan.corpus`'s job.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import torch
import torchaudio

from distillgan.errors import CorpusError
from distillgan.mel import SAMPLE_RATE

__all__ = [
    "SAMPLE_RATE",
    "load_audio",
    "resample",
    "write_audio",
]

# Kaiser-windowed sinc settings shared by every resampling in the project (corpus loading
# and export to 48/96 kHz): a long, steep filter, since we resample each file only once.
_LOWPASS_FILTER_WIDTH = 64
_ROLLOFF = 0.9475
_KAISER_BETA = 14.769656459379492
# torchaudio builds a (new, orig + 2*width) kernel from the reduced rate ratio. Exotic rates
# (e.g. 44 101 Hz) would need gigabytes, so past this size we use the nearest small ratio.
_MAX_KERNEL_ELEMENTS = 4_000_000
_MAX_RATIO_TERM = 1000

# First bytes of the containers libsndfile reads; a file that fails to decode but starts
# like one of these is a damaged sound file rather than something that is not audio.
_AUDIO_MAGIC: tuple[bytes, ...] = (
    b"RIFF",
    b"RIFX",
    b"RF64",
    b"BW64",
    b"riff",  # Sony Wave64
    b"FORM",  # AIFF / AIFC
    b"fLaC",
    b"OggS",
    b"ID3",  # MP3 (or FLAC) with an ID3v2 tag
    b"caff",
    b".snd",
)
_HEADER_BYTES = 16
# libsndfile's header log notes a data chunk that claims more bytes than the file holds, e.g.
# "data : 176400 (should be 105822)" (WAV) or " SSND : 176408 (should be 105826)" (AIFF).
_CUT_SHORT_RE = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers that never learn the length put a "maximum" size there: not a truncation.
_SIZE_UNKNOWN = 0xFFFF0000

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


class UnreadableAudio(Exception):
    """A file could not be decoded; ``reason`` is the verdict phrase (corpus scanning reports it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- reading ---------------------------------------------------------------------------


def _cut_short(log: str) -> bool:
    """Whether libsndfile's header log says the audio data runs past the end of the file."""
    return any(
        int(present) < int(declared) < _SIZE_UNKNOWN for declared, present in _CUT_SHORT_RE.findall(log)
    )


def read_raw(path: Path) -> tuple[np.ndarray, int, bool]:
    """Decode a file as float32 ``(frames, channels)``, or raise :class:`UnreadableAudio`.

    Also returns whether the file was cut short (libsndfile then reads what is there).
    """
    try:
        # Opened by us first so permissions and missing files get their own clear reason,
        # and so the first bytes can tell "damaged sound file" from "not a sound file".
        with open(path, "rb") as handle:
            header = handle.read(_HEADER_BYTES)
    except PermissionError:
        raise UnreadableAudio("permission denied") from None
    except FileNotFoundError:
        raise UnreadableAudio("file not found (broken link?)") from None
    except IsADirectoryError:
        raise UnreadableAudio("is a folder, not a file") from None
    except OSError as exc:
        raise UnreadableAudio(f"unreadable ({exc.strerror or exc})") from None
    if not header:
        raise UnreadableAudio("empty (0 bytes)")
    try:
        with sf.SoundFile(path) as handle:
            data = handle.read(dtype="float32", always_2d=True)
            sample_rate, cut_short = handle.samplerate, _cut_short(handle.extra_info)
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError, OSError):
        raise UnreadableAudio("unreadable or corrupt" if _looks_like_audio(header) else "not audio") from None
    return data, int(sample_rate), cut_short


def _looks_like_audio(header: bytes) -> bool:
    if header.startswith(_AUDIO_MAGIC):
        return True
    # A bare MPEG audio frame starts with an 11-bit sync word.
    return len(header) >= 2 and header[0] == 0xFF and (header[1] & 0xE0) == 0xE0


def downmix(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def to_44k(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    return np.ascontiguousarray(resample(mono, sample_rate, SAMPLE_RATE), dtype=np.float32)


def load_audio(path: Path | str) -> np.ndarray:
    """Read any sound file as mono float32 at 44.1 kHz (channels averaged, then resampled).

    Raises :class:`CorpusError` with one line if the file cannot be read.
    """
    path = Path(path)
    try:
        data, sample_rate, _ = read_raw(path)  # a cut-short file is vocoded as far as it goes
    except UnreadableAudio as exc:
        raise CorpusError(f"cannot read {path}: {exc.reason}") from None
    return to_44k(downmix(data), sample_rate)


# --- resampling ------------------------------------------------------------------------


def _resampling_ratio(orig_sr: int, new_sr: int) -> Fraction:
    """The ``new/orig`` ratio to resample with: exact unless its kernel would be huge."""
    ratio = Fraction(new_sr, orig_sr)
    orig, new = ratio.denominator, ratio.numerator
    width = math.ceil(_LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * _ROLLOFF))
    if new * (orig + 2 * width) <= _MAX_KERNEL_ELEMENTS:
        return ratio
    # Bound both terms by 1000 (limit the larger one; the other is smaller still): the
    # ratio then differs by at most ~1e-4 (0.2 cent) from the true one, far below an
    # audible pitch or timing change, and the kernel stays small.
    if ratio >= 1:
        return 1 / (1 / ratio).limit_denominator(_MAX_RATIO_TERM)
    return ratio.limit_denominator(_MAX_RATIO_TERM)


def resample(audio: ArrayOrTensor, orig_sr: int, new_sr: int) -> ArrayOrTensor:
    """Resample along the last axis with a Kaiser-windowed sinc; returns the input's type.

    The one resampler of the project: corpus loading and export both use it. NumPy input
    comes back as NumPy (float64 stays float64, anything else becomes float32); a tensor
    stays on its device. Equal rates return the input itself (no copy) when its dtype fits.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if isinstance(audio, np.ndarray):
        dtype = np.float64 if audio.dtype == np.float64 else np.float32
        array = np.ascontiguousarray(audio, dtype=dtype)
        if orig_sr == new_sr:
            return array
        return _resample_tensor(torch.from_numpy(array), _resampling_ratio(orig_sr, new_sr)).numpy()
    tensor = audio if audio.is_floating_point() else audio.float()
    if orig_sr == new_sr:
        return tensor
    return _resample_tensor(tensor, _resampling_ratio(orig_sr, new_sr))


def _resample_tensor(tensor: torch.Tensor, ratio: Fraction) -> torch.Tensor:
    if tensor.shape[-1] == 0:
        return tensor.clone()
    return torchaudio.functional.resample(
        tensor,
        orig_freq=ratio.denominator,
        new_freq=ratio.numerator,
        lowpass_filter_width=_LOWPASS_FILTER_WIDTH,
        rolloff=_ROLLOFF,
        resampling_method="sinc_interp_kaiser",
        beta=_KAISER_BETA,
    )


# --- writing ---------------------------------------------------------------------------


def write_audio(path: Path | str, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``(frames,)`` or ``(frames, channels)`` audio; the format follows the suffix.

    Only float subtypes can hold values beyond ±1; for every other one libsndfile would clip
    without a word, so such audio is refused: the caller chooses to normalise or clip.
    """
    audio = np.asarray(audio)
    if not np.isfinite(audio).all():
        raise ValueError(f"refusing to write {path}: audio contains NaN/Inf")
    if subtype.upper() not in ("FLOAT", "DOUBLE") and audio.size and float(np.abs(audio).max()) > 1.0:
        raise ValueError(
            f"refusing to write {path}: peak {float(np.abs(audio).max()):.3f} exceeds 1.0 "
            f"and {subtype} would clip (normalise or clip first)"
        )
    existed = os.path.lexists(path)
    try:
        sf.write(str(path), audio, int(sample_rate), subtype=subtype)
    except BaseException:
        if not existed:  # no half-written file left behind (e.g. the disk filled up)
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
