"""Where models live and what their files are called: the models folder, model names, the
``.distillgan`` suffix, and the lock and temp files a writer puts beside a model."""

from __future__ import annotations

import os
import re
from pathlib import Path

from distillgan.errors import ModelFileError

SUFFIX = ".distillgan"
MODELS_DIR_ENV = "DISTILLGAN_MODELS_DIR"

LOCK_SUFFIX = ".lock"

_TMP_MARK = ".tmp-"
_TMP_TAIL_RE = re.compile(r"([0-9]{1,12})-[0-9a-f]{8}")  # after the mark: writer's pid, random token
_NAME_RE = re.compile(r"[\w\-. ]+")


def default_models_dir(override: str | Path | None = None) -> Path:
    """``override``, else ``$DISTILLGAN_MODELS_DIR``, else ``~/distillgan/models`` (not created)."""
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(MODELS_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / "distillgan" / "models"


def _check_name(name: str) -> None:
    ok = (
        _NAME_RE.fullmatch(name) is not None
        # a leading dot would hide the file (and collide with our temp files); edge spaces confuse
        and not name.startswith((".", " "))
        and not name.endswith(" ")
        # leaves room for the suffix and temp-file decorations within a 255-byte file name
        and len(name.encode("utf-8")) <= 200
    )
    if not ok:
        raise ModelFileError(
            f"'{name}' is not a valid model name (use letters, digits, '-', '_', '.' and spaces)"
        )


def resolve_model(
    name_or_path: str | Path, models_dir: str | Path | None = None, *, must_exist: bool = True
) -> Path:
    """A path (a ``Path``, or text with "/", ending in .distillgan or naming a file) as-is, else a model name."""
    text = str(name_or_path)
    is_path = (
        isinstance(name_or_path, Path)
        or "/" in text
        or text.endswith(SUFFIX)
        or (text != "" and Path(text).expanduser().is_file())
    )
    if is_path:
        path = Path(text).expanduser()
        if must_exist and not path.exists():
            raise ModelFileError(f"no model file at {path}")
        return path
    _check_name(text)
    folder = default_models_dir(models_dir)
    path = folder / f"{text}{SUFFIX}"
    if must_exist and not path.exists():
        raise ModelFileError(f"no model named '{text}' in {folder} (see `distillgan model list`)")
    return path


def new_model_path(name: str, models_dir: str | Path | None = None) -> Path:
    """Where a new model called ``name`` lives: ``<models dir>/<name>.distillgan`` (a name, never a path)."""
    _check_name(name)
    return default_models_dir(models_dir) / f"{name}{SUFFIX}"


def list_models(models_dir: str | Path | None = None) -> list[Path]:
    """The model files in ``models_dir`` sorted by name; temp and lock files are skipped."""
    folder = default_models_dir(models_dir)
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ModelFileError(f"cannot list models in {folder} ({exc.strerror})") from exc
    models = [p for p in entries if p.name.endswith(SUFFIX) and not p.name.startswith(".") and p.is_file()]
    return sorted(models, key=lambda p: (p.name.casefold(), p.name))


def model_name(path: Path) -> str:
    """A model's name: its file name without the suffix."""
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name


def _label(path: Path) -> str:
    return f"model '{model_name(path)}'"


def _canonical(path: str | Path) -> Path:
    # resolve symlinks so the lock and the replaced file are the real file, not the link
    return Path(path).expanduser().resolve()
