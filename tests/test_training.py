"""Trainer wiring: Ctrl+C on one DDP worker (two CPU processes, gloo; the runs under each
launcher, and who writes, are in tests/robustness/test_ddp.py), and the logged history a
resumed run continues."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from distillgan.modelfile import open_model
from distillgan.progress import ProgressEvent
from distillgan.training import (
    logged_history,
    steps_per_epoch,
    vocoder_epochs_for,
)
from tests.cli.conftest import cli_env, run_until_sigint
from tests.training_runs import train_tiny_vocoder

pytestmark = pytest.mark.timeout(600)


def test_ctrl_c_on_one_ddp_worker_stops_every_rank(vae_model: Path, models_dir: Path) -> None:
    args = ["train", "vocoder", "tiny", "--recipe", "vocoder_tiny", "--epochs", "40"]
    args += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    code, out, err, seconds = run_until_sigint(args, cli_env(models_dir), target="worker")
    assert code == 130, out + err
    saved = re.search(r"Checkpoint saved at epoch (\d+)\. Resume anytime\.", out)
    assert saved, out + err
    assert out.count("Corpus: 5 files") == 1  # the worker trains silently
    attrs = open_model(vae_model).attrs("vocoder")
    assert attrs["status"] == "partial" and attrs["epochs_completed"] == int(saved.group(1))
    assert 0 < attrs["steps"] < 40 * 4
    assert seconds < 60


def test_adaptive_epochs_never_give_zero_steps() -> None:
    assert steps_per_epoch([100], 8192, 16) == 1
    assert steps_per_epoch([8192 * 16, 1], 8192, 16) == 2
    assert vocoder_epochs_for(1) == 5000  # capped
    assert vocoder_epochs_for(10_000) == 5  # at least a few epochs
    assert vocoder_epochs_for(100, warmup_steps=1000) == 210


def tiny_vocoder_run(path: Path, corpus: Path, **kwargs: Any) -> str:
    """A tiny vocoder run (see ``train_tiny_vocoder``); returns its TensorBoard folder."""
    starts: list[ProgressEvent] = []
    train_tiny_vocoder(
        path, corpus, listener=lambda e: starts.append(e) if e.kind == "start" else None, **kwargs
    )
    assert starts[0].path is not None
    return starts[0].path


def test_a_resumed_run_continues_the_logged_history_of_the_runs_before_it(
    vae_model: Path, tiny_corpus: Path, tmp_path: Path, one_thread: None
) -> None:
    """Cancel and resume train bit-identically, so the history before the resume plus what the
    resumed run logs is exactly what one uninterrupted run logs."""
    reference = tmp_path / "reference.distillgan"
    shutil.copy(vae_model, reference)
    uninterrupted = logged_history(
        Path(tiny_vocoder_run(reference, tiny_corpus)).with_name("vocoder-next"), "vocoder", 10**9
    )
    assert {key for _, key, _ in uninterrupted} >= {"train/g_loss", "train/mel_l1", "val/mel_l1"}

    first = tiny_vocoder_run(vae_model, tiny_corpus, cancel_after=10)  # in the second epoch
    resumed = tiny_vocoder_run(vae_model, tiny_corpus, resume=True)
    assert Path(first).parent == Path(resumed).parent and first != resumed
    before = logged_history(resumed, "vocoder", 11)  # the resumed run starts at step 11
    assert before and max(step for step, _, _ in before) < 11
    after = logged_history(Path(resumed).with_name("vocoder-next"), "vocoder", 10**9)
    assert len(after) > len(before)  # the resumed run's own points are the rest
    assert set(uninterrupted) <= set(after)  # every point, at its step, with its exact value
    # plus what the cancelled run logged at its last step, which the uninterrupted run did not log
    assert all(step < 11 for step, _, _ in set(after) - set(uninterrupted))


def write_run(folder: Path, epoch: int, points: dict[str, list[tuple[int, float]]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    for tag, series in points.items():
        for step, value in series:
            writer.add_scalar(tag, value, step)
            writer.add_scalar("epoch", epoch, step)  # as Lightning logs it beside every metric
    writer.close()


def test_the_history_follows_resumes_back_to_the_last_fresh_start(tmp_path: Path) -> None:
    logs = tmp_path / "tensorboard"
    write_run(logs / "vocoder-20260101-000001", 0, {"train/g_loss": [(0, 1.0), (5, 2.0), (9, 3.0)]})
    write_run(
        logs / "vocoder-20260101-000002", 1, {"train/g_loss": [(10, 4.0), (15, 5.0)], "lr": [(10, 0.1)]}
    )
    write_run(logs / "vae-20260101-000003", 0, {"train/loss": [(1, 9.0)]})
    resuming_run_2 = logged_history(logs / "vocoder-20260101-000003", "vocoder", 12)
    assert resuming_run_2 == [
        (0, "train/g_loss", 1.0),
        (5, "train/g_loss", 2.0),
        (9, "train/g_loss", 3.0),
        (10, "train/g_loss", 4.0),
    ]

    # a fresh start (it begins in epoch 0) cuts the history: nothing older than it is continued
    write_run(logs / "vocoder-20260101-000004", 0, {"train/g_loss": [(3, 6.0)], "val/mel_l1": [(6, 7.0)]})
    assert logged_history(logs / "vocoder-20260101-000005", "vocoder", 100) == [
        (3, "train/g_loss", 6.0),
        (6, "val/mel_l1", 7.0),
    ]
    assert logged_history(logs / "vae-20260101-000009", "vae", 100) == [(1, "train/loss", 9.0)]


@pytest.mark.usefixtures("one_thread")
def test_two_vocoder_trainings_in_one_process_run_concurrently_as_each_would_alone(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    """The UI runs one job per model, each in a thread: nothing process-wide may leak between
    them (the parametrization cache once did; so did the global RNG, which Lightning rewinds
    after each fit's sanity check: a run starting beside a network build changed its weights
    about one run in three on a busy CPU, see ``distillgan.seeding``)."""
    import threading

    import torch

    from distillgan.audio import SAMPLE_RATE, write_audio
    from distillgan.examples import synth_bell, synth_pluck

    other_corpus = tmp_path / "other"  # another corpus of the tiny one's size: other sounds, other seeds
    other_corpus.mkdir()
    for seed in range(5):
        sound = (
            synth_pluck(1.0, seed=10 + seed, freq=150.0 + 40 * seed)
            if seed % 2
            else synth_bell(1.0, seed=10 + seed)
        )
        write_audio(other_corpus / f"{seed}.wav", sound, SAMPLE_RATE)
    corpora = {"a": tiny_corpus, "b": other_corpus}

    def weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
        return open_model(folder / f"{name}.distillgan").tensors("vocoder", prefix="generator")

    errors: list[BaseException] = []

    def run(folder: Path, name: str) -> None:
        try:
            train_tiny_vocoder(folder / f"{name}.distillgan", corpora[name])
        except BaseException as error:  # reported below, with the thread's traceback
            errors.append(error)
            raise

    # each run in a thread of its own, as the UI runs jobs (a new thread's torch settings are
    # the process's, which may differ from the main thread's): one at a time, then together
    alone, together = tmp_path / "alone", tmp_path / "together"
    alone.mkdir()
    together.mkdir()
    for name in corpora:
        thread = threading.Thread(target=run, args=(alone, name))
        thread.start()
        thread.join()
    threads = [threading.Thread(target=run, args=(together, name)) for name in corpora]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for name in corpora:
        expected, got = weights(alone, name), weights(together, name)
        assert all(torch.equal(expected[k], got[k]) for k in expected), name
