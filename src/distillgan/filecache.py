"""Building a model from its files once per version of those files.

Loaders of big models (a model file's VAE and vocoder, BigVGAN-v2's weights) share what they
build between callers, and must build afresh when a file is replaced or rewritten. They key a
cache by :func:`file_version` of each file plus the device, under :func:`once_per_file_version`.

Torch-free, so that the modules that only read model-file records stay light.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from distillgan.errors import ModelFileError

T = TypeVar("T")


class FileVersion(NamedTuple):
    """One version of a file: where it is, and what changes when it is replaced or rewritten."""

    path: Path  # resolved: a symlink (hub snapshot entries point into blobs/) counts as its target
    inode: int  # an atomic replace (os.replace) gives a new inode even with equal mtime and size
    mtime_ns: int
    size: int


def file_version(path: str | Path) -> FileVersion:
    """The version of the file at ``path`` now; raises :class:`OSError` when there is none."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return FileVersion(resolved, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def model_file_version(model_path: str | Path) -> FileVersion:
    """The version of the model file at ``model_path``; a :class:`ModelFileError` when there is none."""
    try:
        return file_version(model_path)
    except OSError as error:
        raise ModelFileError(f"no model file at {model_path}") from error


def once_per_file_version(maxsize: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: ``build`` runs once per distinct arguments, the last ``maxsize`` results kept.

    ``build`` takes the :class:`FileVersion` of each file it reads and the device (a string),
    so a changed file or another device builds afresh. Calls take one lock: two concurrent first
    requests build one big model, not two (a hit waits only while a build is under way). The decorated
    function keeps ``cache_clear()`` and ``cache_info()`` of :func:`functools.lru_cache`.
    """

    def decorate(build: Callable[..., T]) -> Callable[..., T]:
        cached = functools.lru_cache(maxsize=maxsize)(build)
        lock = threading.Lock()

        @functools.wraps(build)
        def load(*args: Any) -> T:
            with lock:
                return cached(*args)

        load.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        load.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return load

    return decorate
