"""The writer: every write builds a complete new file and atomically replaces the old one.

The new file is a temp file in the same folder, written through a guard that keeps a failed
write (a full disk) away from HDF5, fsynced, then moved over the old one with ``os.replace``.
The caller holds the model's :class:`~distillgan.modelfile.lock.ModelLock`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from distillgan import __version__
from distillgan.errors import DamagedModelFileError, ModelFileError
from distillgan.modelfile.paths import _TMP_MARK, _canonical
from distillgan.modelfile.reader import _brief, _damaged_file_errors, _plain_attr, open_model
from distillgan.modelfile.records import FileRecord
from distillgan.modelfile.schema import (
    _BF16_ATTR,
    _SECTION_RE,
    SCHEMA_VERSION,
    Section,
    _to_numpy,
    _utc_now,
    renamed_attrs,
)

if TYPE_CHECKING:
    import torch

    from distillgan.modelfile.lock import ModelLock


def _check_tensor_names(names: set[str], section: str) -> None:
    for name in names:
        parts = name.split("/") if isinstance(name, str) else [""]
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"invalid tensor name {name!r} in section '{section}'")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise ValueError(
                    f"tensor '{name}' in section '{section}' sits below tensor '{'/'.join(parts[:i])}'"
                )


def _write_tensor(group: h5py.Group, name: str, value: torch.Tensor | np.ndarray) -> None:
    array, tag = _to_numpy(value)
    ds = group.create_dataset(name, data=array)
    if tag is not None:
        ds.attrs[_BF16_ATTR] = tag


def _write_section(
    out: h5py.File, name: str, section: Section, check: Callable[[], None] = lambda: None
) -> None:
    group = out.create_group(name)
    for key, value in section.attrs.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"section '{name}' has an invalid attribute name {key!r}")
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"section '{name}' attribute '{key}' is not JSON-able ({exc})") from exc
        group.attrs[key] = text
    _check_tensor_names(set(section.tensors), name)
    for tensor_name, value in section.tensors.items():
        _write_tensor(group, tensor_name, value)
        check()


class _GuardedFile:
    """The file object HDF5 writes a new model file through (h5py's "fileobj" driver).

    HDF5 cannot recover from a failed write (disk full, quota, I/O error): its close then fails
    as well and leaves the library broken -- a stream of errors, sometimes a crash at exit. So a
    failed write is never reported to HDF5. The error is recorded, the bytes HDF5 meant to write
    are kept in memory (it reads back what it wrote), and :meth:`check` raises the error from
    our own code at the next safe point; HDF5 then closes cleanly and the temp file is deleted.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0
        self._size = 0
        self.error: OSError | None = None
        self._held: list[tuple[int, bytes]] = []

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}.get(whence, 0)
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        size = max(0, self._size - self._pos) if size < 0 else size
        data = bytearray(size)  # HDF5 expects exactly ``size`` bytes, zeros past the end
        got = 0
        try:
            while got < size:
                chunk = os.pread(self._fd, size - got, self._pos + got)
                if not chunk:
                    break
                data[got : got + len(chunk)] = chunk
                got += len(chunk)
        except OSError as exc:
            self._fail(exc)
        for start, held in self._held:
            low, high = max(start, self._pos), min(start + len(held), self._pos + size)
            if low < high:
                data[low - self._pos : high - self._pos] = held[low - start : high - start]
        self._pos += size
        return bytes(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        count = len(view)
        if self.error is None:
            try:
                done = 0
                while done < count:
                    written = os.pwrite(self._fd, view[done:], self._pos + done)
                    if written <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    done += written
            except OSError as exc:
                self._fail(exc)
        if self.error is not None:
            self._held.append((self._pos, view.tobytes()))
        self._pos += count
        self._size = max(self._size, self._pos)
        return count

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self._fail(exc)
        self._size = size
        return size

    def flush(self) -> None:
        """Nothing to do: bytes go straight to the file; :func:`_build` fsyncs it at the end."""


def _stored_sections(f: h5py.File) -> list[str]:
    """The top-level entries a reader accepts as stages: groups stored in the file under a valid
    name. A link (soft, or external to another file) or a loose dataset is not carried into a
    rewrite: copying would turn a link into a plain copy of what it points to."""
    return [
        name
        for name in f
        if _SECTION_RE.fullmatch(name)
        and isinstance(f.get(name, getlink=True), h5py.HardLink)
        and isinstance(f[name], h5py.Group)
    ]


def _build(tmp: Path, old: Path | None, sections: Mapping[str, Section | None], created: str | None) -> None:
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        guard = _GuardedFile(fd)
        with h5py.File(guard, "w") as out:
            if old is not None:
                with _damaged_file_errors(old), h5py.File(old, "r") as src:
                    version = _plain_attr(src, "schema_version")  # checked when write_model opened it
                    for name in _stored_sections(src):
                        if name not in sections:
                            src.copy(src[name], out, name=name)  # attributes and nested data come along
                            # the rewrite is of this schema: the copied stage takes its names
                            group = out[name]
                            for old_name, new_name in renamed_attrs(version, name):
                                if old_name in group.attrs and new_name not in group.attrs:
                                    h5py.h5a.rename(group.id, old_name.encode(), new_name.encode())
                guard.check()  # outside: a failed write is not a damaged old file
            for name, section in sections.items():
                if section is not None:
                    _write_section(out, name, section, guard.check)
            now = _utc_now()
            out.attrs.update(FileRecord(SCHEMA_VERSION, __version__, created or now, now).to_attrs())
        guard.check()  # closing flushed HDF5's last buffers through the guard
        # fsync gets the bytes on disk before the rename makes them live
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # best effort: some file systems refuse fsync on directories, and the replace already happened
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_model(
    path: str | Path,
    sections: Mapping[str, Section | None],
    *,
    lock: ModelLock,
    create: bool = False,
    replace_damaged: bool = False,
) -> None:
    """Atomically rewrite the model at ``path``: ``sections`` replace (or, when None, delete) stages.

    Stages not named are copied unchanged. On any error the old file stays untouched and the
    temp file is removed. ``lock`` must be held for this path. ``replace_damaged``: a file whose
    bytes are no readable model (:class:`DamagedModelFileError`) is replaced by ``sections`` alone
    instead of refused; any other file that cannot be read is always refused.
    """
    target = _canonical(path)
    if not (lock.held and lock.path == target):
        raise ValueError(f"write_model needs a held ModelLock for {target}")
    for name in sections:
        if not isinstance(name, str) or _SECTION_RE.fullmatch(name) is None:
            raise ValueError(f"invalid section name {name!r}")
    exists = target.exists()
    if not exists and not create:
        raise ModelFileError(f"no model file at {target}")
    old: Path | None = target if exists else None
    created = None
    if old is not None:
        # refuses damaged or newer-schema files before anything is built on them
        try:
            created = open_model(target).root_attrs.get("created")
        except DamagedModelFileError:
            if not replace_damaged:
                raise
            old = None  # nothing in it can be kept
    tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        _build(tmp, old, sections, created)
        if exists:
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = "the model file is unchanged" if exists else "nothing was written"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ModelFileError(
                f"not enough disk space to write {target} ({os.strerror(exc.errno)}); {kept}"
            ) from exc
        raise ModelFileError(f"cannot write {target} ({_brief(exc)}); {kept}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
