"""The writer lock: one holder at a time per model, released by the kernel when it dies."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
from datetime import datetime
from pathlib import Path

from distillgan.errors import ModelFileError, ModelLockedError
from distillgan.modelfile.paths import _TMP_MARK, _TMP_TAIL_RE, LOCK_SUFFIX, _canonical, _label
from distillgan.modelfile.schema import _utc_now


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c for c in text if c.isprintable())[:limit]


def _describe_holder(raw: bytes) -> str:
    """Who holds a lock, from the JSON its holder wrote (untrusted: any field may be missing)."""
    try:
        info = json.loads(raw.decode("utf-8"))
    except ValueError:
        info = None
    if not isinstance(info, dict):
        return "another process"
    owner = info.get("owner")
    text = _printable(owner) if isinstance(owner, str) and owner else "another process"
    details = []
    pid, host = info.get("pid"), info.get("host")
    if isinstance(pid, int):
        details.append(f"pid {pid} on {_printable(host, 100)}" if isinstance(host, str) else f"pid {pid}")
    since = info.get("since")
    with contextlib.suppress(TypeError, ValueError):
        moment = datetime.fromisoformat(since).astimezone()
        today = moment.date() == datetime.now().astimezone().date()
        details.append("since " + moment.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S"))
    return f"{text} ({', '.join(details)})" if details else text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def _remove_orphaned_temps(target: Path) -> None:
    """Delete temp files that writes of ``target`` left behind when their process died (kill -9,
    power cut, OOM killer): ``.<name>.tmp-<pid>-<8 hex>`` files whose pid is gone.

    Only a lock holder calls this. Holding the lock already means no other writer is at work;
    the dead-pid test is a second guard. Best effort: a temp file left in place is harmless
    (hidden, and never listed as a model), it only wastes space.
    """
    prefix = f".{target.name}{_TMP_MARK}"
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        match = _TMP_TAIL_RE.fullmatch(entry.name[len(prefix) :])
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


class ModelLock:
    """Exclusive writer lock for one model: ``flock`` on ``<model>.lock`` beside the model file.

    flock belongs to one open file description, which gives the two properties we need:

    * the kernel drops it when the holder dies, so a lock file left by a killed process holds
      stale text but no lock and is simply acquired again;
    * a second ``open()`` of the lock file conflicts even inside the same process (two threads,
      two UI tabs), so every ModelLock object is its own holder.

    A lock file outlives its holder beside a model file. When there is no model file (a failed
    creation, a model deleted or renamed), the holder deletes the lock file before unlocking,
    so nothing is left behind. That is safe because acquiring checks, once locked, that the
    path still names the file it locked, and starts over otherwise: a process that opened the
    old file before it was deleted never holds a lock on it while another locks a new one.
    """

    def __init__(self, path: str | Path, *, owner: str) -> None:
        self.path = _canonical(path)
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self.owner = owner
        self._fd: int | None = None
        self._pid = 0

    @property
    def held(self) -> bool:
        # a forked child inherits the descriptor but is not the holder
        return self._fd is not None and self._pid == os.getpid()

    def _cannot_lock(self, exc: OSError) -> ModelFileError:
        return ModelFileError(f"cannot lock {_label(self.path)}: {self.lock_path} ({exc.strerror})")

    def acquire(self) -> ModelLock:
        """Take the lock without waiting; ModelLockedError names the holder if it is taken."""
        if self._fd is not None:
            raise RuntimeError(f"this ModelLock for {self.path} is already acquired")
        fd = self._lock_file()
        while not self._still_named(fd):  # its holder deleted it after we opened it: take the new one
            os.close(fd)
            fd = self._lock_file()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "owner": self.owner, "since": _utc_now()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        except OSError as exc:
            os.close(fd)  # closing the only descriptor releases the flock
            raise self._cannot_lock(exc) from exc
        self._fd, self._pid = fd, os.getpid()
        _remove_orphaned_temps(self.path)
        return self

    def _still_named(self, fd: int) -> bool:
        try:
            named = os.stat(self.lock_path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def _lock_file(self) -> int:
        """The lock file, opened (created if need be) and flocked; raises if another holds it."""
        try:
            # never through a link: one planted in a shared folder would have us truncate its target
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ModelFileError(
                    f"cannot lock {_label(self.path)}: {self.lock_path} is a symbolic link; remove it"
                ) from exc
            raise self._cannot_lock(exc) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ModelFileError(
                f"cannot lock {_label(self.path)}: {self.lock_path} is not a regular file; remove it"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise ModelLockedError(
                f"{_label(self.path)} is in use by {holder}; wait for it to finish or stop it"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise self._cannot_lock(exc) from exc
        return fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._pid == os.getpid():  # a forked child must not unlock its parent's lock
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    if not os.path.lexists(self.path) and self._still_named(fd):  # no model: nothing to guard
                        os.unlink(self.lock_path)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> ModelLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
