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
from distillgan.modelfile import SUFFIX, ModelLock, model_name, new_model_path

# Asked, with the lock held, whether to go ahead; gets a description of what will change.
Confirm = Callable[[str], bool]


def _run_dir(path: Path) -> Path:
    from distillgan.training import run_dir

    return run_dir(path)


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
def _holding(path: Path, action: str) -> Iterator[ModelLock]:
    """The model's lock for ``action``; a model in use is refused in one line."""
    try:
        lock = ModelLock(path, owner=f"distillgan model {action}").acquire()
    except ModelLockedError as exc:
        raise ModelLockedError(f"cannot {action}: {exc}") from None
    try:
        yield lock
    finally:
        lock.release()  # with no model file left (deleted, renamed), the lock file goes too


def describe_deletion(path: Path) -> str:
    """E.g. ``model 'rain' (12.3 MB) and its run folder /m/runs/rain (TensorBoard logs and previews, 4.1 MB)``."""
    text = f"model '{model_name(path)}' ({_size_text(_size(path))})"
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
            raise DistillganError(f"kept model '{model_name(path)}'; nothing was deleted")
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
        yield target, f"model '{model_name(path)}' to '{new_name}'"


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
            raise DistillganError(f"kept the name '{model_name(path)}'; nothing was renamed")
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


# ---------------------------------------------------------------------------------------------
# What takes the space, and compacting: dropping a stopped run's resumable training state

# (section, what it is, whether compacting drops it)
SECTIONS = (
    ("vae", "VAE weights", False),
    ("vocoder", "vocoder weights", False),
    ("vae_checkpoint", "VAE training state (resumable)", True),
    ("vocoder_checkpoint", "vocoder training state (resumable)", True),
)


def _section_bytes(path: Path) -> dict[str, int]:
    """Bytes of data stored under each section of the model file (``{}`` when unreadable: the
    figures are only said to the user)."""
    import h5py

    from distillgan.modelfile import open_model

    sizes: dict[str, int] = {}
    try:
        stored = set(open_model(path).sections())  # checks the file first (format, schema, links)
        with h5py.File(path, "r") as f:
            for name in stored:
                total = 0

                def add(_: str, obj: object) -> None:
                    nonlocal total
                    if isinstance(obj, h5py.Dataset):
                        total += obj.id.get_storage_size()

                f[name].visititems(add)  # hard links only: a link out of the file is never followed
                sizes[name] = total
    except (OSError, ValueError, KeyError, RuntimeError, DistillganError):
        # a damaged file's parts have no size to report (h5py says "Object visitation failed"
        # with a RuntimeError); `model info` still reports the rest
        return {}
    return sizes


def storage(path: Path) -> list[tuple[str, int]]:
    """What takes the space of a model, biggest part of each kind first: ``(what, bytes)`` for
    the model file's weights and training states, the rest of the file (settings, corpus list,
    structure), and the run folder's (``runs/<name>``) previews and TensorBoard logs."""
    path = _model(path)
    sizes = _section_bytes(path)
    parts = [(what, sizes[name]) for name, what, _ in SECTIONS if name in sizes]
    try:
        rest = path.stat().st_size - sum(sizes.values())
    except OSError:
        rest = 0
    parts.append(("settings, corpus list and file structure", max(0, rest)))
    runs = _run_dir(path)
    for sub, what in (("previews", "audio previews"), ("tensorboard", "TensorBoard logs")):
        if os.path.lexists(runs / sub):
            parts.append((what, _size(runs / sub)))
    return parts


# what compacting drops, as storage() names it
TRAINING_STATE = frozenset(what for _, what, drop in SECTIONS if drop)


def size_text(size: int) -> str:
    """A size as every message about the library says it (``12.3 MB``, ``40 KB``)."""
    return _size_text(size)


def storage_text(parts: list[tuple[str, int]]) -> str:
    """E.g. ``VAE weights 12.1 MB · vocoder training state (resumable) 723.0 MB · …``."""
    return " · ".join(f"{what} {_size_text(size)}" for what, size in parts)


def _droppable(path: Path) -> list[tuple[str, str, int]]:
    sizes = _section_bytes(path)
    return [(name, what, sizes[name]) for name, what, drop in SECTIONS if drop and name in sizes]


def describe_compaction(path: Path) -> str:
    """What compacting would drop, and what that means (for the question)."""
    dropped = _droppable(path)
    if not dropped:
        raise DistillganError(
            f"model '{model_name(path)}' holds no training state: there is nothing to compact"
        )
    parts = ", ".join(f"its {what} ({_size_text(size)})" for _, what, size in dropped)
    return (
        f"model '{model_name(path)}': drop {parts}. The trained weights stay and the model generates as "
        "before, but the stopped run can no longer be resumed or extended (training again starts fresh)"
    )


def check_compact(path: Path) -> str:
    """What compacting ``path`` would drop (for the question), or why it cannot: a model in use
    is refused at once, naming its user; one without training state has nothing to drop."""
    path = _model(path)
    with _holding(path, "compact"):
        return describe_compaction(path)


def compact_model(path: Path, *, confirm: Confirm | None = None) -> int:
    """Drop the resumable training state of a stopped run from the model at ``path`` (its
    ``vae_checkpoint`` and ``vocoder_checkpoint`` sections), once ``confirm`` agrees.

    The file is rewritten atomically (``write_model``): the weights, the corpus manifest and
    every other section are copied unchanged; any failure leaves the old file as it was.
    Returns the bytes freed. Refuses a model in use (before asking) and one with no training
    state; when ``confirm`` says no, nothing changes.
    """
    from distillgan.modelfile import write_model

    path = _model(path)
    with _holding(path, "compact") as lock:
        what = describe_compaction(path)
        if confirm is not None and not confirm(what):
            raise DistillganError(f"kept model '{model_name(path)}' as it was; nothing was dropped")
        before = path.stat().st_size
        write_model(path, {name: None for name, _, _ in _droppable(path)}, lock=lock)
        return max(0, before - path.stat().st_size)
