"""What generation offers (vocoders, export rates and depths, limits), importable without torch.

The CLI builds its options and ``--help`` from these; :mod:`distillgan.generation` enforces them.
"""

from __future__ import annotations

VOCODER_CHOICES: tuple[str, ...] = ("auto", "hifigan", "bigvgan")
SAMPLE_RATES: tuple[int, ...] = (44100, 48000, 96000)
BIT_DEPTHS: tuple[str, ...] = ("16", "24", "32f")
# soundfile subtype and a human name per bit depth
SUBTYPES: dict[str, str] = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}
BIT_DEPTH_NAMES: dict[str, str] = {"16": "16-bit PCM", "24": "24-bit PCM", "32f": "32-bit float"}
WRITABLE_SUFFIXES: tuple[str, ...] = (".wav", ".flac")

MIN_DURATION_S = 0.1
MAX_DURATION_S = 3600.0
MAX_SEED = 2**63 - 1
DEFAULT_DURATION_S = 10.0
