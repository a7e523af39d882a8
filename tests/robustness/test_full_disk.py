"""A checkpoint write that fails for lack of space leaves the previous file intact, says so in
one line, and stops training cleanly (non-zero exit, no traceback); freeing space, the run
resumes. Tested on a real, small, filled-up file system (a tmpfs mounted by the test) and, always,
with the write error injected where HDF5 writes."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillgan.modelfile import open_model
from distillgan.modelfile import writer as modelfile_writer
from distillgan.vocoders.hifigan import load_hifigan
from tests.cli.conftest import assert_one_line_error, invoke
from tests.robustness.harness import (
    TINY_VOCODER,
    CliProcess,
    lock_holder,
    make_vae_model,
    temp_files,
    vocoder_epochs_saved,
    wait_until,
    write_recipe,
    write_short_corpus,
)

DISK_FULL = "not enough disk space to write"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: room for the model and its run folder, and for filling up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root on Linux")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Take every byte left on ``folder``'s file system."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        for block in (1 << 20, 1 << 12, 1 << 9):
            try:
                while True:
                    out.write(b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.timeout(600)
def test_full_disk_stops_training_and_keeps_the_last_checkpoint(small_disk: Path, tmp_path: Path) -> None:
    corpus = write_short_corpus(tmp_path / "corpus")
    models = small_disk / "models"
    model = make_vae_model(corpus, models / "m.distillgan")
    recipe = write_recipe(tmp_path / "vocoder.yaml", TINY_VOCODER)
    train = ["train", "vocoder", "m", "--config", str(recipe), "--epochs", "40"]
    with CliProcess(train, models_dir=models, log_dir=tmp_path / "logs", label="full") as run:
        wait_until(
            lambda: vocoder_epochs_saved(model) >= 1, timeout=300, watch=run, what="a first checkpoint"
        )
        # freeze the trainer between two writes, fill the disk, let it go on
        while True:
            run.stop()
            if not temp_files(model):
                break
            run.resume()
        saved, before = vocoder_epochs_saved(model), model.read_bytes()
        filler = fill(small_disk)
        run.resume()
        code = run.wait(300)
    assert code == 1, run.describe()
    result_stderr = run.stderr
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"error: {DISK_FULL} {model}"), result_stderr
    assert lines[-1].endswith("the model file is unchanged"), result_stderr
    assert all(line.startswith(("warning:", "error: ")) for line in lines), result_stderr
    assert "Traceback" not in result_stderr + run.stdout
    assert model.read_bytes() == before, "the failed write changed the model file"
    assert temp_files(model) == [] and lock_holder(model) is None

    # free some space: the file is whole and the run goes on from the last checkpoint
    filler.unlink()
    load_hifigan(model)
    resumed = invoke(
        ["train", "vocoder", "m", "--resume", "--epochs", str(saved + 1), "--models-dir", str(models)]
    )
    assert resumed.exit_code == 0, resumed.stderr
    assert open_model(model).attrs("vocoder")["epochs_completed"] == saved + 1


def test_injected_disk_full_error_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """Where no file system can be mounted: the second write's bytes fail as on a full disk."""
    corpus = write_short_corpus(tmp_path / "corpus")
    models = tmp_path / "models"
    model = make_vae_model(corpus, models / "m.distillgan")
    recipe = write_recipe(tmp_path / "vocoder.yaml", TINY_VOCODER, preview_interval=100)
    real_build = modelfile_writer._build
    builds: list[bytes] = []

    def full_disk(*args: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def build(tmp: Path, *args: Any) -> None:
        builds.append(model.read_bytes())
        if len(builds) < 3:
            return real_build(tmp, *args)
        with monkeypatch.context() as patch:  # HDF5 writes go through os.pwrite in the guard
            patch.setattr(os, "pwrite", full_disk)
            return real_build(tmp, *args)

    monkeypatch.setattr(modelfile_writer, "_build", build)
    result = invoke(
        ["train", "vocoder", "m", "--config", str(recipe), "--epochs", "5", "--models-dir", str(models)]
    )
    assert_one_line_error(result, f"{DISK_FULL} {model}", "the model file is unchanged")
    assert len(builds) == 3, "training went on after the failed write"
    assert model.read_bytes() == builds[-1], "the failed write changed the model file"
    assert vocoder_epochs_saved(model) == 2
    assert temp_files(model) == [] and lock_holder(model) is None


@pytest.mark.parametrize("fail_at", [1, 2, 3, 10, 40, 10_000])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_failed_write_anywhere_in_a_save_is_clean(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    fail_at: int,
    code: int,
) -> None:
    """HDF5 never sees the failure (it would leave the library broken: errors at every later
    close, even a crash at exit): the save raises one ModelFileError, the old file is kept."""
    import torch

    from distillgan.errors import ModelFileError
    from distillgan.modelfile import ModelLock, Section, pack_tree, write_model

    path = tmp_path / "m.distillgan"
    first = {"vae": Section(attrs={"config": {"a": 1}}, tensors={"w": torch.ones(5000)})}
    state = pack_tree({"moments": [torch.randn(300) for _ in range(40)], "step": 7})
    real_pwrite, calls = os.pwrite, []

    def failing(fd: int, data: Any, offset: int) -> int:
        calls.append(offset)
        if len(calls) >= fail_at:
            raise OSError(code, os.strerror(code))
        return real_pwrite(fd, data, offset)

    with ModelLock(path, owner="test") as lock:
        write_model(path, first, lock=lock, create=True)
        before = path.read_bytes()
        monkeypatch.setattr(os, "pwrite", failing)
        try:
            write_model(path, {"vocoder_checkpoint": state}, lock=lock)
            failed = False
        except ModelFileError as exc:
            failed = True
            kept = "the model file is unchanged"
            message = DISK_FULL if code == errno.ENOSPC else "Input/output error"
            assert message in str(exc) and str(exc).endswith(kept), str(exc)
        monkeypatch.undo()
        assert failed == (fail_at <= len(calls)), "a failure was missed or invented"
        if failed:
            assert path.read_bytes() == before
        write_model(path, {"vocoder_checkpoint": state}, lock=lock)  # HDF5 is fine afterwards
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.distillgan", "m.distillgan.lock"]
    assert open_model(path).tree("vocoder_checkpoint")["step"] == 7
    captured = capfd.readouterr()
    assert "Exception ignored" not in captured.err and "HDF5" not in captured.err, captured.err
