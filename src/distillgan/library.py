"""The models folder as a library: deleting and renaming a model with everything that is its own.

A model is its file, its lock file and its run folder (``runs/<name>``: TensorBoard logs and
audio previews). Both changes hold the model's lock throughout, so a model in use (training in
a terminal, in the UI or in another process) is refused at once, naming who uses it, and the
question is asked only of a model that can be changed. The CLI and the UI call only this.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from distillgan.errors import DistillganError, ModelFileError, ModelLockedError
from distillgan.modelfile import SUFFIX, ModelLock, new_model_path

# Asked, with the lock held, whether to go ahead; gets a description of what will change.
Confirm = Callable[[str], bool]


def _run_dir(path: Path) -> Path:
    from distillgan.training import run_dir

    return run_dir(path)


def _name(path: Path) -> str:
    return path.name[: -len(SUFFIX)]


def _size(path: Path) -> int:
    """Bytes under ``path`` (links not followed); only said to the user, so a race or an
    unreadable folder costs the figure, never the operation."""
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
        return sum(entry.lstat().st_size for entry in path.rglob("*") if not entry.is_dir())
    except OSError:
        return 0


def _size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{max(1, round(size / 1e3))} KB"


def _model(path: Path) -> Path:
    path = Path(path)
    if not path.name.endswith(SUFFIX) or not os.path.lexists(path) or path.is_dir():
        raise ModelFileError(f"no model file at {path}")
    return path


@contextmanager
def _holding(path: Path, action: str) -> Iterator[None]:
    """The model's lock for ``action``; a model in use is refused in one line."""
    try:
        lock = ModelLock(path, owner=f"distillgan model {action}").acquire()
    except ModelLockedError as exc:
        raise ModelLockedError(f"cannot {action}: {exc}") from None
    try:
        yield
    finally:
        lock.release()  # with no model file left (deleted, renamed), the lock file goes too


def describe_deletion(path: Path) -> str:
    """E.g. ``model 'rain' (12.3 MB) and its run folder /m/runs/rain (TensorBoard logs and previews, 4.1 MB)``."""
    text = f"model '{_name(path)}' ({_size_text(_size(path))})"
    runs = _run_dir(path)
    if os.path.lexists(runs):
        text += f" and its run folder {runs} (TensorBoard logs and previews, {_size_text(_size(runs))})"
    return text


def check_delete(path: Path) -> str:
    """What deleting ``path`` would remove (for the question), or why it cannot: a model in use
    is refused at once, naming its user."""
    path = _model(path)
    with _holding(path, "delete"):
        return describe_deletion(path)


def delete_model(path: Path, *, confirm: Confirm | None = None) -> None:
    """Delete the model file at ``path`` and its run folder, once ``confirm`` agrees.

    Raises :class:`ModelLockedError` for a model in use (before asking) and
    :class:`DistillganError` when ``confirm`` says no (nothing is deleted then).
    """
    path = _model(path)
    with _holding(path, "delete"):
        if confirm is not None and not confirm(describe_deletion(path)):
            raise DistillganError(f"kept model '{_name(path)}'; nothing was deleted")
        runs = _run_dir(path)
        try:
            path.unlink()
            if runs.is_symlink() or runs.is_file():
                runs.unlink()  # a link: only the link is this model's
            elif runs.is_dir():
                shutil.rmtree(runs)
        except OSError as exc:
            raise DistillganError(f"cannot delete {exc.filename or path}: {exc.strerror or exc}") from exc


@contextmanager
def _renaming(path: Path, new_name: str) -> Iterator[tuple[Path, str]]:
    """Both names' locks held and every check passed: the new path, and what will change."""
    path = _model(path)
    target = new_model_path(new_name, path.parent)  # a name, checked like --name: never a path
    if target == path:
        raise DistillganError(f"model '{new_name}' already has that name")
    with _holding(path, "rename"), _holding(target, "rename"):  # nobody creates the new name meanwhile
        if os.path.lexists(target):
            raise DistillganError(
                f"cannot rename: a model named '{new_name}' already exists in {path.parent}"
            )
        new_runs = _run_dir(target)
        if os.path.lexists(new_runs):
            raise DistillganError(
                f"cannot rename: {new_runs} already exists (an earlier model's logs): move or delete it first"
            )
        yield target, f"model '{_name(path)}' to '{new_name}'"


def check_rename(path: Path, new_name: str) -> str:
    """What renaming would do (for the question), or why it cannot (in use, a name taken)."""
    with _renaming(path, new_name) as (_, what):
        return what


def rename_model(path: Path, new_name: str, *, confirm: Confirm | None = None) -> Path:
    """Rename the model at ``path`` to ``new_name`` (in the same folder), its run folder with it.

    Returns the new path. Refuses a model in use and a name that is taken (by a model, or by
    the run folder of an earlier one); when ``confirm`` says no, nothing changes.
    """
    path = _model(path)
    with _renaming(path, new_name) as (target, what):
        if confirm is not None and not confirm(what):
            raise DistillganError(f"kept the name '{_name(path)}'; nothing was renamed")
        runs, new_runs = _run_dir(path), _run_dir(target)
        moved_runs = os.path.lexists(runs)
        try:
            if moved_runs:
                os.rename(runs, new_runs)
            try:
                os.rename(path, target)
            except OSError:
                if moved_runs:
                    os.rename(new_runs, runs)  # all or nothing
                raise
        except OSError as exc:
            raise DistillganError(f"cannot rename {exc.filename or path}: {exc.strerror or exc}") from exc
    return target
