"""kill -9 at any moment -- in the middle of a checkpoint write too -- costs at most one checkpoint
interval: the model file opens, its VAE is bit-identical, and `--resume` carries on.

Real `distillgan` processes, real SIGKILL. The mid-write moment is hit deterministically: the
trainer is frozen (SIGSTOP) while its temp file exists, i.e. before the atomic replace, then killed.
While the last run trains, the concurrency rules are checked from other processes: a second
trainer (CLI or UI) is refused with the holder's description, and every read (`model info`, the
generation loaders) succeeds and sees a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from distillgan.callbacks import model_file
from distillgan.errors import ModelLockedError
from distillgan.generation import load_vae
from distillgan.modelfile import ModelLock, Section, StageRecord, list_models, open_model, write_model
from distillgan.ui.jobs import JobManager, TrainRequest
from distillgan.vocoders.hifigan import load_hifigan
from tests.cli.conftest import assert_one_line_error, invoke
from tests.robustness.harness import (
    TINY_VAE,
    TINY_VOCODER,
    CliProcess,
    freeze_mid_write,
    holds_lock,
    lock_holder,
    make_vae_model,
    pid_alive,
    preview_epochs,
    temp_files,
    tensor_bits,
    vae_summary,
    vocoder_epochs_saved,
    wait_until,
    write_recipe,
    write_short_corpus,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP/SIGKILL and /proc are Linux")


def previews_since(models: Path, name: str, since: float) -> list[int]:
    folder = models / "runs" / name / "previews"
    return [
        e
        for e in preview_epochs(models, name)
        if (folder / f"epoch-{e:04d}_clip-1.wav").stat().st_mtime >= since
    ]


def assert_list_and_info_ignore_the_orphan(models: Path, epochs: int) -> None:
    listed = invoke(["model", "list", "--models-dir", str(models)])
    assert listed.exit_code == 0, listed.stderr
    assert ".tmp-" not in listed.stdout and "unreadable" not in listed.stdout
    assert [p.name for p in list_models(models)] == ["m.distillgan"]
    info = invoke(["model", "info", "m", "--json", "--models-dir", str(models)])
    assert info.exit_code == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["vocoder"]["epochs_completed"] == epochs and data["vocoder"]["status"] == "partial"
    assert data["vocoder_checkpoint"] is True


@pytest.mark.timeout(600)
def test_vocoder_killed_mid_write_and_at_random_resumes(tmp_path: Path) -> None:
    corpus = write_short_corpus(tmp_path / "corpus")
    models, logs = tmp_path / "models", tmp_path / "logs"
    model = make_vae_model(corpus, models / "m.distillgan")
    recipe = write_recipe(tmp_path / "vocoder.yaml", TINY_VOCODER)
    vae_before, vae_attrs = tensor_bits(model, "vae"), open_model(model).attrs("vae")
    manifest = open_model(model).attrs("dataset")

    # 1. SIGKILL in the middle of a checkpoint write
    train = ["train", "vocoder", "m", "--config", str(recipe), "--epochs", "40"]
    with CliProcess(train, models_dir=models, log_dir=logs, label="first") as first:
        wait_until(
            lambda: vocoder_epochs_saved(model) >= 1, timeout=300, watch=first, what="a first checkpoint"
        )
        temp = freeze_mid_write(first, model, timeout=120)
        on_disk = model.read_bytes()  # the trainer is frozen: this is the last complete version
        reached = max(preview_epochs(models, "m"))
        first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    assert temp.exists() and temp.stat().st_size > 0, "the kill did not land inside a write"
    assert model.read_bytes() == on_disk, "a write cut off by SIGKILL changed the model file"
    saved = vocoder_epochs_saved(model)
    assert saved >= 1 and reached - saved <= 1, f"lost {reached - saved} epochs (interval 1)"
    assert tensor_bits(model, "vae") == vae_before
    assert open_model(model).attrs("vae") == vae_attrs and open_model(model).attrs("dataset") == manifest
    load_vae(model)  # the product's own loaders accept what is left
    load_hifigan(model)
    assert open_model(model).tree("vocoder_checkpoint")["epoch"] == saved - 1  # Lightning's, from 0
    steps_per_epoch = open_model(model).attrs("vocoder")["steps"] // saved
    # the killed trainer's lock file still names it: stale, but the kernel lock died with it
    holder = lock_holder(model)
    assert holder is not None and holder["pid"] == first.pid and not pid_alive(first.pid)
    assert_list_and_info_ignore_the_orphan(models, saved)

    # 2. resume (not refused by the stale lock), SIGKILL at a random moment of its training
    delay = random.Random(os.getpid()).uniform(0.0, 4.0)
    started = time.time()
    with CliProcess(
        ["train", "vocoder", "m", "--resume", "--epochs", "40"],
        models_dir=models,
        log_dir=logs,
        label="second",
    ) as second:
        wait_until(lambda: holds_lock(model, second), timeout=300, watch=second, what="the lock")
        end = time.monotonic() + delay
        while time.monotonic() < end:
            assert second.running(), second.describe()
            time.sleep(0.01)
        second.stop()
        reached = max([saved, *previews_since(models, "m", started)])
        second.kill()
    assert second.proc.returncode == -signal.SIGKILL, second.describe()
    resumed_saved = vocoder_epochs_saved(model)
    assert saved <= resumed_saved and reached - resumed_saved <= 1, (delay, reached, resumed_saved)
    assert tensor_bits(model, "vae") == vae_before

    # 3. resume to the end, exactly where the file left off. Meanwhile, from other processes:
    # a second trainer of the model is refused with the holder's description, and reads work
    final = resumed_saved + 4
    started = time.time()
    with CliProcess(
        ["train", "vocoder", "m", "--resume", "--epochs", str(final)],
        models_dir=models,
        log_dir=logs,
        label="third",
    ) as third:
        wait_until(lambda: holds_lock(model, third), timeout=300, watch=third, what="the lock")
        holder = f"in use by distillgan train vocoder (pid {third.pid} on {socket.gethostname()}"
        where = ["--models-dir", str(models)]
        for args in (
            ["train", "vocoder", "m", "--resume", *where],
            ["train", "vae", str(corpus), "--name", "m", "--overwrite", *where],
        ):
            assert_one_line_error(invoke(args), holder)
        with pytest.raises(ModelLockedError) as refused:  # the UI's Train button, same model
            JobManager(models).submit(TrainRequest(stage="vocoder", model_path=model, resume=True))
        assert holder in str(refused.value)
        seen = read_while_training(third, model, models)
        assert third.wait(400) == 0, third.describe()
    assert len(seen) >= 3 and len(set(seen)) >= 2, f"reads did not interleave with writes: {seen}"
    assert seen == sorted(seen) and seen[0] >= resumed_saved, seen
    assert "Resuming" in third.stdout and "Vocoder training complete" in third.stdout
    assert "Traceback" not in third.stderr
    attrs = open_model(model).attrs("vocoder")
    assert (attrs["status"], attrs["epochs_completed"]) == ("complete", final)
    assert attrs["steps"] == final * steps_per_epoch, "epochs were repeated or skipped"
    assert previews_since(models, "m", started) == list(range(resumed_saved + 1, final + 1))
    assert tensor_bits(model, "vae") == vae_before
    assert temp_files(model) == [], "the orphaned temp file was not cleaned up"
    assert lock_holder(model) is None  # released


def read_while_training(trainer: CliProcess, model: Path, models: Path) -> list[int]:
    """Read the model the ways users do while ``trainer`` writes it: every read must succeed and
    see a complete checkpoint. Returns the vocoder epochs seen, in order."""
    seen: list[int] = []
    generate = ["generate", "m", "--vocoder", "hifigan", "--duration", "0.2", "--seed", "3", "--overwrite"]
    generate += ["-o", str(models.parent / "generated.wav"), "--models-dir", str(models)]
    while trainer.running():
        info = invoke(["model", "info", "m", "--json", "--models-dir", str(models)])
        assert info.exit_code == 0, info.stderr
        seen.append(json.loads(info.stdout)["vocoder"]["epochs_completed"])
        load_vae(model)
        load_hifigan(model)  # names, shapes and finiteness of the generator's weights
        generated = invoke(generate)  # the whole generate command, through the per-model vocoder
        assert generated.exit_code == 0, generated.stderr
        time.sleep(0.1)
    return seen


@pytest.mark.timeout(600)
def test_vae_killed_mid_write_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    corpus = write_short_corpus(tmp_path / "corpus")
    models, logs = tmp_path / "models", tmp_path / "logs"
    epochs, interval = 60, 6  # the VAE stage saves every epochs // 10
    recipe = write_recipe(tmp_path / "vae.yaml", TINY_VAE, epochs=epochs)
    model = models / "v.distillgan"
    train = ["train", "vae", str(corpus), "--name", "v", "--config", str(recipe), "--models-dir", str(models)]

    with CliProcess(train, models_dir=models, log_dir=logs, label="vae") as first:
        wait_until(model.exists, timeout=300, watch=first, what="the model file")
        temp = freeze_mid_write(first, model, timeout=120)
        on_disk = model.read_bytes()
        first.kill()
    assert temp.exists(), "the kill did not land inside a write"
    assert model.read_bytes() == on_disk
    summary = vae_summary(model)
    saved = summary["epochs_completed"]
    assert summary["status"] == "partial" and saved % interval == 0 and saved >= interval
    vae_saved = tensor_bits(model, "vae")
    load_vae(model)
    assert open_model(model).has("dataset") and open_model(model).has("vae_checkpoint")

    # `train vae --resume` (in this process: what it writes is recorded) goes on from there
    written: list[int] = []
    real_write = model_file.write_model

    def recording_write(path: Path, sections: dict[str, Any], **kwargs: Any) -> None:
        if sections.get("vae") is not None:
            written.append(json.loads(sections["vae"].attrs["summary"])["epochs_completed"])
        real_write(path, sections, **kwargs)

    monkeypatch.setattr(model_file, "write_model", recording_write)
    resumed = invoke([*train, "--resume"])
    assert resumed.exit_code == 0, resumed.stderr
    assert "VAE training complete" in resumed.stdout
    assert written == list(range(saved + interval, epochs + 1, interval)), (saved, written)
    final = vae_summary(model)
    assert (final["status"], final["epochs_completed"]) == ("complete", epochs)
    assert tensor_bits(model, "vae") != vae_saved  # trained on
    assert temp_files(model) == []


def test_lock_holder_clears_only_orphaned_temp_files(tmp_path: Path) -> None:
    model = tmp_path / "m.distillgan"
    with ModelLock(model, owner="test") as lock:
        write_model(model, {"vae": Section(attrs={"x": 1})}, lock=lock, create=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "orphan": f".m.distillgan.tmp-{dead.pid}-0123abcd",
            "live writer": f".m.distillgan.tmp-{live.pid}-89abcdef",
            "ours": f".m.distillgan.tmp-{os.getpid()}-deadbeef",
            "other model": f".n.distillgan.tmp-{dead.pid}-0123abcd",
            "not our pattern": f".m.distillgan.tmp-{dead.pid}-notatoken",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"\x89HDF half written")
        # readers never look at them
        assert [p.name for p in list_models(tmp_path)] == ["m.distillgan"]
        assert open_model(model).attrs("vae") == {"x": 1}
        with ModelLock(model, owner="next writer"):
            left = {p.name for p in tmp_path.iterdir()}
        assert names["orphan"] not in left
        assert {names[k] for k in ("live writer", "ours", "other model", "not our pattern")} <= left
    finally:
        live.kill()
        live.wait()


def test_replacing_a_model_keeps_the_old_one_until_the_first_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """`train vae --overwrite` (the UI's "Replace the model"): a run that dies before its first
    save leaves the old model -- its trained vocoder too -- whole; the first save replaces it."""
    from distillgan import training
    from distillgan.lightning_modules.hifigan import HiFiGANModule
    from distillgan.recipes import load_vocoder_config

    corpus = write_short_corpus(tmp_path / "corpus")
    models = tmp_path / "models"
    model = make_vae_model(corpus, models / "m.distillgan")
    progress = StageRecord(status="complete", epoch=3, epochs_completed=3, total_epochs=3, steps=18)
    with ModelLock(model, owner="test") as lock:
        sections = HiFiGANModule(load_vocoder_config(None, TINY_VOCODER)).model_file_sections(progress)
        write_model(model, sections, lock=lock)
    before = model.read_bytes()
    recipe = write_recipe(tmp_path / "vae.yaml", TINY_VAE, epochs=2)
    replace = ["train", "vae", str(corpus), "--name", "m", "--overwrite", "--config", str(recipe)]
    replace += ["--models-dir", str(models)]

    def power_cut(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the run dies after taking the lock, before any save

    with monkeypatch.context() as patch:
        patch.setattr(training, "_trainer", power_cut)
        assert invoke(replace).exit_code == 130
    assert model.read_bytes() == before, "the old model was lost before the new one was saved"

    assert invoke(replace).exit_code == 0
    reader = open_model(model)
    assert reader.sections() == ["dataset", "vae"], "stages of the replaced model survived"
    assert vae_summary(model)["status"] == "complete"
