"""Loaders build once per file version: one build for concurrent first requests, a new one when
the file is replaced, and a clear error for a missing model file."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from distillgan.errors import ModelFileError
from distillgan.filecache import FileVersion, file_version, model_file_version, once_per_file_version


def counting_loader(maxsize: int = 2, build_s: float = 0.0) -> tuple[Any, list[tuple[Path, str]]]:
    builds: list[tuple[Path, str]] = []

    @once_per_file_version(maxsize=maxsize)
    def load(version: FileVersion, device: str) -> object:
        time.sleep(build_s)  # a slow build: a second first request arrives while it runs
        builds.append((version.path, device))
        return object()

    return load, builds


def test_concurrent_first_requests_build_once(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"v1")
    load, builds = counting_loader(build_s=0.2)
    start = threading.Barrier(4)

    def request() -> object:
        start.wait()
        return load(file_version(path), "cpu")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: request(), range(4)))
    assert builds == [(path.resolve(), "cpu")]
    assert all(result is results[0] for result in results)


def test_a_replaced_file_or_another_device_builds_afresh(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"v1")
    load, builds = counting_loader()
    first = load(file_version(path), "cpu")
    assert load(file_version(path), "cpu") is first
    assert load(file_version(path), "meta") is not first

    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"v2")  # same size: only the inode tells the versions apart
    os.replace(replacement, path)
    assert load(file_version(path), "cpu") is not first
    assert len(builds) == 3
    assert (load.cache_info().hits, load.cache_info().misses) == (1, 3)


def test_a_symlink_is_its_target(tmp_path: Path) -> None:
    blob = tmp_path / "blobs" / "abc"
    blob.parent.mkdir()
    blob.write_bytes(b"weights")
    link = tmp_path / "snapshot.bin"
    link.symlink_to(blob)
    assert file_version(link) == file_version(blob)
    assert file_version(link).path == blob.resolve()


def test_the_cache_keeps_maxsize_results_and_can_be_cleared(tmp_path: Path) -> None:
    paths = [tmp_path / f"{n}.bin" for n in range(3)]
    for path in paths:
        path.write_bytes(b"x")
    load, builds = counting_loader(maxsize=2)
    for path in [*paths, paths[0]]:  # the third evicts the first, which is built again
        load(file_version(path), "cpu")
    assert len(builds) == 4
    load.cache_clear()
    load(file_version(paths[2]), "cpu")
    assert len(builds) == 5


def test_a_missing_model_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"no model file at .*nothing\.distillgan"):
        model_file_version(tmp_path / "nothing.distillgan")
    with pytest.raises(OSError):
        file_version(tmp_path / "nothing.bin")
