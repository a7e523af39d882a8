"""The corpus: the sound files a model learns from, and the record of them in its model file.

A folder (or one file) is scanned for sound files. Bad files never stop a corpus from loading:
each gets a :class:`FileVerdict` with a one-line reason, and only a corpus with no usable file at
all is an error. Short files (one-shots: a drum hit, a pluck) are kept: only files under
:data:`MIN_DURATION_S` are too short, and :func:`pack_short_sounds` joins short sounds into
training sequences. The manifest records each file's identity so a later run can tell whether
the corpus is still there and unchanged, and a later run finds the corpus again through it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from distillgan.audio import UnreadableAudio, downmix, read_raw, to_44k
from distillgan.errors import CorpusError, ModelFileError
from distillgan.mel import SAMPLE_RATE

__all__ = [
    "AUDIO_SUFFIXES",
    "FEW_FILES_WARNING_THRESHOLD",
    "MIN_DURATION_S",
    "PACK_GAP_S",
    "SILENCE_PEAK",
    "Corpus",
    "CorpusFile",
    "FileVerdict",
    "ManifestCheck",
    "build_manifest",
    "check_file",
    "check_manifest",
    "file_fingerprint",
    "format_duration",
    "load_corpus",
    "pack_short_sounds",
    "scan_audio_files",
]

# Containers libsndfile can decode (it recognises the content, not the name; the suffix
# only decides what a folder scan picks up).
AUDIO_SUFFIXES: tuple[str, ...] = (
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".aifc",
    ".caf",
    ".w64",
    ".rf64",
    ".au",
    ".snd",
)
MIN_DURATION_S = 0.02  # shorter holds less than one mel frame (512 samples at 44.1 kHz is 12 ms)
PACK_GAP_S = 0.075  # the silence between packed short sounds: each one's tail ends before the next
FEW_FILES_WARNING_THRESHOLD = 5
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a file holds nothing a model could learn from


@dataclass(frozen=True)
class FileVerdict:
    """Whether one file is usable, and if not, why (one short phrase for a warning line)."""

    path: Path
    ok: bool
    reason: str | None
    duration_s: float = 0.0
    sample_rate: int | None = None
    channels: int | None = None

    def describe(self) -> str:
        """One warning line, e.g. ``skipping rain.wav: silent``."""
        return f"skipping {self.path}: {self.reason}" if not self.ok else f"{self.path}: ok"


@dataclass
class CorpusFile:
    """A usable file, already mono float32 at 44.1 kHz. ``sample_rate`` is the file's own rate."""

    path: Path
    audio: np.ndarray
    duration_s: float
    sample_rate: int = SAMPLE_RATE


@dataclass
class Corpus:
    """The usable files under ``root`` (a folder; for a single-file corpus, its folder)."""

    root: Path
    files: list[CorpusFile]
    skipped: list[FileVerdict] = field(default_factory=list)

    @property
    def total_duration_s(self) -> float:
        return sum(f.duration_s for f in self.files)

    def summary(self) -> str:
        """E.g. ``12 files, 1 min 04 s of audio, 2 skipped``."""
        text = f"{_plural(len(self.files), 'file')}, {format_duration(self.total_duration_s)} of audio"
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        return text


@dataclass(frozen=True)
class ManifestCheck:
    """How a model's recorded corpus compares with what is on disk now."""

    root: Path
    total: int
    missing: list[str]
    changed: list[str]
    root_found: bool = True

    @property
    def ok(self) -> bool:
        return self.root_found and not self.missing and not self.changed

    def describe(self) -> str:
        """One line, e.g. ``2 files missing (a.wav, b.wav) and 1 changed (c.wav) under /x``."""
        if not self.root_found:
            return f"corpus folder {self.root} not found ({_plural(self.total, 'file')} expected)"
        if self.ok:
            return f"all {_plural(self.total, 'file')} present and unchanged under {self.root}"
        parts = []
        if self.missing:
            parts.append(f"{_plural(len(self.missing), 'file')} missing ({_name_list(self.missing)})")
        if self.changed:
            noun = "changed" if self.missing else f"{'file' if len(self.changed) == 1 else 'files'} changed"
            parts.append(f"{len(self.changed)} {noun} ({_name_list(self.changed)})")
        return f"{' and '.join(parts)} under {self.root}"


def format_duration(seconds: float) -> str:
    """Human duration: ``4.2 s``, ``1 min 04 s``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {(whole % 3600) // 60:02d} min"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _name_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, … and {len(names) - limit} more"


# --- verdicts ---------------------------------------------------------------------------


def check_file(path: Path | str) -> tuple[FileVerdict, np.ndarray | None]:
    """Load and validate one file: its verdict, and its mono 44.1 kHz audio when usable."""
    path = Path(path)
    try:
        data, sample_rate, cut_short = read_raw(path)
    except UnreadableAudio as exc:
        return FileVerdict(path, False, exc.reason), None
    frames, channels = data.shape
    duration_s = frames / sample_rate

    def bad(reason: str) -> tuple[FileVerdict, None]:
        return FileVerdict(path, False, reason, duration_s, sample_rate, channels), None

    if cut_short:  # an interrupted copy or download: the user has the whole file somewhere
        return bad(f"truncated (the file ends after {duration_s:.2f} s, before its audio data does)")
    if frames == 0:
        return bad("empty (0 samples)")
    if not np.isfinite(data).all():
        return bad("contains NaN/Inf")
    # Judged on the mono mix: that is all a model will ever hear of the file.
    mono = downmix(data)
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        cancelled = float(np.abs(data).max()) >= SILENCE_PEAK
        return bad("silent (channels cancel out in the mono mix)" if cancelled else "silent")
    if duration_s < MIN_DURATION_S:
        return bad(f"too short ({duration_s * 1000:.0f} ms < {MIN_DURATION_S * 1000:.0f} ms)")
    return FileVerdict(path, True, None, duration_s, sample_rate, channels), to_44k(mono, sample_rate)


# --- the corpus ------------------------------------------------------------------------


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def scan_audio_files(
    root: Path | str, *, on_unreadable_dir: Callable[[Path], None] | None = None
) -> list[Path]:
    """Every file with an audio suffix under ``root``, recursively, in sorted order.

    Hidden files and folders are skipped, folder symlinks are followed but each real folder
    is visited once (so link loops end), and a file reachable twice is listed once.
    Broken links with an audio suffix are listed so they get a verdict instead of vanishing.
    Folders that cannot be listed are reported to ``on_unreadable_dir`` and skipped.
    """
    root = Path(root)
    visited: set[str] = set()
    seen_files: set[str] = set()
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in visited:
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            if folder == root:
                raise
            if on_unreadable_dir is not None:
                on_unreadable_dir(folder)
            continue
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            path = folder / entry.name
            if _safe(entry.is_dir):
                stack.append(path)
            elif entry.name.lower().endswith(AUDIO_SUFFIXES) and (
                _safe(entry.is_file) or _safe(entry.is_symlink)
            ):
                found.append(path)
    unique: list[Path] = []
    for path in sorted(found, key=lambda p: p.relative_to(root).parts):
        real_file = os.path.realpath(path)
        if real_file not in seen_files:
            seen_files.add(real_file)
            unique.append(path)
    return unique


def _safe(check: Callable[[], bool]) -> bool:
    """``DirEntry`` tests can raise on odd entries (link loops); treat those as "no"."""
    try:
        return check()
    except OSError:
        return False


def load_corpus(
    root: Path | str,
    *,
    on_skip: Callable[[FileVerdict], None] | None = None,
    paths: Iterable[Path | str] | None = None,
) -> Corpus:
    """Load every usable file under ``root`` (a folder, or a single sound file).

    ``paths`` (absolute, or relative to ``root``) replaces the folder scan. Each unusable
    file is reported to ``on_skip`` and recorded in ``Corpus.skipped``. Raises
    :class:`CorpusError` when ``root`` is missing or nothing usable is found. Fewer than
    :data:`FEW_FILES_WARNING_THRESHOLD` good files is allowed; warning about it is the
    caller's job.
    """
    given = Path(root)
    root_path = Path(os.path.abspath(given))
    if not root_path.exists():
        raise CorpusError(f"audio folder not found: {given}")
    if paths is not None:
        if not root_path.is_dir():
            raise CorpusError(f"not a folder: {given}")
        candidates = [root_path / p for p in paths]
    elif root_path.is_file():
        candidates, root_path = [root_path], root_path.parent
    elif root_path.is_dir():
        candidates = _scan_root(root_path, given, on_skip)
    else:
        raise CorpusError(f"not a folder or sound file: {given}")
    if not candidates:
        raise CorpusError(f"no audio files found in {given}")

    files: list[CorpusFile] = []
    skipped: list[FileVerdict] = []
    for path in candidates:
        verdict, audio = check_file(path)
        if audio is None:
            skipped.append(verdict)
            if on_skip is not None:
                on_skip(verdict)
            continue
        files.append(CorpusFile(path, audio, len(audio) / SAMPLE_RATE, verdict.sample_rate or SAMPLE_RATE))
    if not files:
        raise CorpusError(
            f"no usable audio in {given}: {_plural(len(skipped), 'file')} skipped (see warnings above)"
        )
    return Corpus(root_path, files, skipped)


def pack_short_sounds(
    sounds: Sequence[torch.Tensor], min_samples: int, *, gap_samples: int = round(PACK_GAP_S * SAMPLE_RATE)
) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Training sequences (last axis: samples) from a corpus's sounds, one-shots packed.

    A sound at least ``min_samples`` long stays as it is. Shorter ones are joined in corpus
    order, ``gap_samples`` of silence apart, into packs of at least ``min_samples``; a last pack
    still too short joins the one before it (alone, it is padded by the loader like any short
    sequence). Returns the sequences in corpus order and, for each, the sounds it holds.
    """
    packs: list[list[int]] = []
    current: list[int] = []
    length = 0
    for i, sound in enumerate(sounds):
        if sound.shape[-1] >= min_samples:
            packs.append([i])
            continue
        length += sound.shape[-1] + (gap_samples if current else 0)
        current.append(i)
        if length >= min_samples:
            packs.append(current)
            current, length = [], 0
    if current:
        short_packs = [pack for pack in packs if sounds[pack[0]].shape[-1] < min_samples]
        if short_packs:
            short_packs[-1] += current
        else:
            packs.append(current)
    packs.sort(key=lambda pack: pack[0])
    sequences = []
    for pack in packs:
        parts = [sounds[pack[0]]]
        for i in pack[1:]:
            silence = sounds[i].new_zeros((*sounds[i].shape[:-1], gap_samples))
            parts += [silence, sounds[i]]
        sequences.append(torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0])
    return sequences, packs


def _scan_root(root: Path, given: Path, on_skip: Callable[[FileVerdict], None] | None) -> list[Path]:
    def unreadable(folder: Path) -> None:
        if on_skip is not None:
            on_skip(FileVerdict(folder, False, "folder not readable"))

    try:
        return scan_audio_files(root, on_unreadable_dir=unreadable)
    except PermissionError:
        raise CorpusError(f"cannot read folder {given}: permission denied") from None
    except OSError as exc:
        raise CorpusError(f"cannot read folder {given}: {exc.strerror or exc}") from None


# --- the manifest: which corpus a model was trained on ---------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: Path | str, root: Path | str | None = None) -> dict[str, Any]:
    """Identity of one file: relative posix path (to ``root``, else its name), size, mtime,
    sha256, and its own duration and sample rate (from the header)."""
    path = Path(path)
    stat = path.stat()
    info = sf.info(str(path))
    relative = path.relative_to(root).as_posix() if root is not None else path.name
    return {
        "path": relative,
        "size": stat.st_size,
        "mtime": stat.st_mtime,
        "sha256": _sha256(path),
        "duration_s": float(info.frames / info.samplerate),
        "sample_rate": int(info.samplerate),
    }


def build_manifest(corpus: Corpus) -> dict[str, Any]:
    """The record of a corpus stored in a model file: root and one fingerprint per file."""
    root = Path(os.path.abspath(corpus.root))
    return {
        "root": str(root),
        "files": [file_fingerprint(Path(os.path.abspath(f.path)), root) for f in corpus.files],
    }


def _manifest_entries(manifest: Any) -> tuple[str, list[dict[str, Any]]]:
    """Validate a manifest read back from a (possibly hand-edited or hostile) model file."""
    broken = ModelFileError("the model's dataset manifest is malformed")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("root"), str):
        raise broken
    entries = manifest.get("files")
    if not isinstance(entries, list):
        raise broken
    for entry in entries:
        if not isinstance(entry, dict):
            raise broken
        relative = entry.get("path")
        # Paths stay inside the corpus folder: a manifest cannot send us hashing elsewhere.
        if (
            not isinstance(relative, str)
            or not relative
            or relative.startswith("/")
            or ".." in relative.split("/")
        ):
            raise broken
        if not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            raise broken
        if not isinstance(entry.get("mtime"), (int, float)):
            raise broken
    return manifest["root"], entries


def check_manifest(manifest: dict[str, Any], audio_dir: Path | str | None = None) -> ManifestCheck:
    """Compare a manifest with the disk: which files are missing or changed (by relative path).

    ``audio_dir`` overrides the recorded root (the corpus moved). Files whose size and mtime
    match are trusted without hashing; a differing mtime alone (e.g. after a copy) is
    settled by the sha256.
    """
    recorded_root, entries = _manifest_entries(manifest)
    root = Path(os.path.abspath(audio_dir if audio_dir is not None else recorded_root))
    if not root.is_dir():
        names = [e["path"] for e in entries]
        return ManifestCheck(root, len(entries), names, [], root_found=False)
    missing: list[str] = []
    changed: list[str] = []
    for entry in entries:
        path = root / entry["path"]
        try:
            stat = path.stat()
        except OSError:
            missing.append(entry["path"])
            continue
        size_differs = stat.st_size != entry["size"]
        if size_differs or (stat.st_mtime != entry["mtime"] and not _same_hash(path, entry["sha256"])):
            changed.append(entry["path"])
    return ManifestCheck(root, len(entries), missing, changed)


def _same_hash(path: Path, expected: str) -> bool:
    try:
        return _sha256(path) == expected
    except OSError:
        return False


def check_model_corpus(
    manifest: dict[str, Any], *, audio_dir: Path | None = None, accept_changes: bool = False
) -> ManifestCheck:
    """Compare a model's corpus manifest with the disk (cheap: hashes only files whose mtime moved).

    Raises :class:`~distillgan.errors.CorpusError` naming the missing or changed files unless
    ``accept_changes``, or when none of the files is left; returns the ``ManifestCheck``.
    """
    check = check_manifest(manifest, audio_dir)
    if not check.root_found:
        raise CorpusError(f"{check.describe()}: point to it with --audio-dir DIR")
    if not check.ok and not accept_changes:
        raise CorpusError(
            f"the corpus no longer matches the model: {check.describe()}; "
            "use --audio-dir if it moved, or --accept-corpus-changes to train on what is there"
        )
    if len(check.missing) == check.total:
        raise CorpusError(f"none of the model's {check.total} corpus files are under {check.root}")
    return check


def load_model_corpus(
    manifest: dict[str, Any],
    *,
    audio_dir: Path | None = None,
    accept_changes: bool = False,
    on_skip: Any = None,
) -> Corpus:
    """The corpus a model was trained on, found again through its manifest.

    Missing or changed files are named; training refuses such a corpus unless
    ``accept_changes``, and then uses the files that are there as they are now.
    """
    check = check_model_corpus(manifest, audio_dir=audio_dir, accept_changes=accept_changes)
    present = [f["path"] for f in manifest["files"] if f["path"] not in set(check.missing)]
    return load_corpus(check.root, paths=present, on_skip=on_skip)
