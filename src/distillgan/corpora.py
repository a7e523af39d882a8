"""Corpus folders as the UI handles them: sound files uploaded through a browser, saved as a new
corpus folder inside the models folder, and the sound files of a corpus listed for auditioning.

An upload is the only way a UI visitor writes files, and it writes only here:
``<models dir>/corpora/<name>/``, a folder created new for the upload (a name is checked as a
model's name is, so it is never a path; an existing folder is refused, never added to), holding
only sound files under their own names. The model of the same name is then created from it like
from any corpus folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import soundfile as sf

from distillgan.corpus import AUDIO_SUFFIXES, scan_audio_files
from distillgan.errors import CorpusError, DistillganError
from distillgan.modelfile import default_models_dir, new_model_path

CORPORA = "corpora"  # the folder of uploaded corpora, inside the models folder


def upload_folder(name: str, models_dir: str | Path | None = None) -> Path:
    """Where the upload called ``name`` goes: ``<models dir>/corpora/<name>`` (a name, never a path)."""
    new_model_path(name, models_dir)  # the model name's check: letters, digits, '-', '_', '.', spaces
    return default_models_dir(models_dir) / CORPORA / name


def _names(files: Sequence[str | Path]) -> list[str]:
    """The files' own names, refused unless every one is a distinct sound file."""
    names = [Path(f).name for f in files]
    not_audio = [n for n, f in zip(names, files, strict=True) if not _is_sound_file(Path(f), n)]
    if not_audio:
        shown = ", ".join(not_audio[:5]) + (f" and {len(not_audio) - 5} more" if len(not_audio) > 5 else "")
        raise CorpusError(
            f"not sound files: {shown} (WAV, FLAC, OGG, MP3 or AIFF files only); nothing was saved"
        )
    seen: set[str] = set()
    for name in names:
        key = name.casefold()  # a case-insensitive disk would merge these
        if key in seen:
            raise CorpusError(f"two files are named {name}: rename one; nothing was saved")
        seen.add(key)
    return names


def _is_sound_file(path: Path, name: str) -> bool:
    # the suffix decides what a corpus scan picks up; the content must be one libsndfile reads
    if not name.lower().endswith(AUDIO_SUFFIXES) or name.startswith("."):
        return False
    try:
        sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError):
        return False
    return True


def save_upload(files: Sequence[str | Path], name: str, models_dir: str | Path | None = None) -> Path:
    """Copy ``files`` (under their own names) into a new corpus folder ``name`` in the models
    folder, and return that folder.

    Refused, with nothing written: a name that is not a valid model name, a name a model or a
    corpus folder already has, no files, a file that is not a sound file, two files of one name.
    A copy that fails (a full disk) removes the new folder again.
    """
    if not files:
        raise CorpusError("choose the sound files to upload first (drop them on the upload box)")
    target = upload_folder(name, models_dir)
    models = default_models_dir(models_dir)
    if os.path.lexists(new_model_path(name, models)):
        raise CorpusError(f"a model named '{name}' already exists: choose another name for the new one")
    names = _names(files)
    corpora = models / CORPORA
    try:
        corpora.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DistillganError(f"cannot create {corpora}: {exc.strerror or exc}") from None
    if not corpora.resolve().is_relative_to(models.resolve()):  # a link out of the models folder
        raise CorpusError(f"{corpora} leads out of the models folder: nothing was saved")
    try:
        target.mkdir()  # exclusive: two uploads of one name cannot mix
    except FileExistsError:
        raise CorpusError(
            f"a corpus folder named '{name}' already exists in {corpora}: choose another name "
            "(its files were left as they are)"
        ) from None
    except OSError as exc:
        raise DistillganError(f"cannot create {target}: {exc.strerror or exc}") from None
    try:
        for source, file_name in zip(files, names, strict=True):
            shutil.copyfile(source, target / file_name)
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise DistillganError(
            f"cannot save the upload in {target} ({exc.strerror or exc}): nothing was kept"
        ) from None
    return target


def corpus_files(folder: str | Path) -> list[Path]:
    """The sound files a corpus folder holds, as training reads them (sorted, recursive)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CorpusError(f"{folder} is not a folder")
    try:
        return scan_audio_files(folder)
    except OSError as exc:
        raise CorpusError(f"cannot read {folder}: {exc.strerror or exc}") from None


def manifest_files(manifest: Any) -> tuple[Path, list[Path]]:
    """The corpus folder and files a model learned from, from its stored manifest; a path that
    would leave the folder (a hand-edited file) is left out."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("root"), str):
        raise CorpusError("the model's corpus record is missing or malformed")
    root = Path(manifest["root"])
    files = []
    for entry in manifest.get("files") or []:
        relative = entry.get("path") if isinstance(entry, dict) else None
        inside = isinstance(relative, str) and relative and not relative.startswith("/")
        if inside and ".." not in relative.split("/"):
            files.append(root / relative)
    return root, files
