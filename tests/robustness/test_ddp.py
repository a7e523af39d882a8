"""Two-process CPU DDP (gloo) through the real command line, started by torchrun and by
Lightning's own launcher (``--strategy auto --devices 2``): both stages train, only rank zero
writes the model file, Ctrl+C's saved state resumes with ``--resume`` on every rank to the same
weights, and a question nobody can answer is one error, with no process left waiting.

What each process did comes from tests/robustness/ddp_probe.py, which runs the CLI in place of
the `distillgan` entry point and logs every model-file write and every finished run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from distillgan.data import RandomCropLoader
from distillgan.modelfile import open_model
from distillgan.training import steps_per_epoch
from tests.robustness.harness import (
    TINY_VAE,
    TINY_VOCODER,
    cli_env,
    make_vae_model,
    write_recipe,
    write_short_corpus,
)

pytestmark = pytest.mark.timeout(300)

PROBE = Path(__file__).with_name("ddp_probe.py")
TORCHRUN = shutil.which("torchrun")
# Each launcher once and each stage once (the launchers differ in how the processes start, the
# stages in what they train and save): the vocoder under torchrun, the VAE under Lightning's own.
VOCODER_LAUNCHER = "torchrun" if TORCHRUN is not None else "lightning"
VAE_LAUNCHER = "lightning"
# where launchers say which process is which: none may leak into the runs from the test's own
RANK_VARIABLES = ("RANK", "GROUP_RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")


class DDPRun:
    """One `distillgan ARGS` over two CPU processes, to the end (killed as a whole on timeout)."""

    def __init__(self, launcher: str, args: list[str], tmp_path: Path, label: str, **env: str) -> None:
        self.log = tmp_path / f"{label}.jsonl"
        out, err = tmp_path / f"{label}.out", tmp_path / f"{label}.err"
        environment = cli_env(tmp_path / "models")
        for name in list(environment):
            if name in RANK_VARIABLES or name.startswith("SLURM_"):
                del environment[name]
        environment.update(DDP_PROBE_LOG=str(self.log), **env)
        args = [*args, "--accelerator", "cpu", "--devices", "2"]
        if launcher == "torchrun":
            command = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(PROBE), *args]
        else:
            command = [sys.executable, str(PROBE), *args, "--strategy", "auto"]
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=environment,
                start_new_session=True,  # launcher and workers: one process group, killed together
            )
            try:
                self.code = process.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                self.code = None
        self.stdout = out.read_text(errors="replace")
        self.stderr = err.read_text(errors="replace")
        self.entries = (
            [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        )
        assert self.code is not None, f"still running after 120 s: {self.describe()}"

    def describe(self) -> str:
        return f"exit {self.code}\n{self.stdout[-3000:]}\n{self.stderr[-6000:]}"

    def writes(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["event"] == "write"]

    def runs(self) -> list[dict[str, Any]]:
        return sorted((e for e in self.entries if e["event"] == "run"), key=lambda e: e["rank"])

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


def resumed_alike(second: DDPRun, steps: int) -> None:
    """Both ranks resumed and ended with ``steps`` steps and the same weights."""
    runs = second.runs()
    assert [(r["rank"], r["world_size"], r["resume"], r["steps"]) for r in runs] == [
        (0, 2, True, steps),
        (1, 2, True, steps),
    ], second.describe()
    assert runs[0]["weights"] == runs[1]["weights"]


def test_vocoder_trains_and_resumes_under_ddp(tmp_path: Path) -> None:
    launcher = VOCODER_LAUNCHER
    corpus = write_short_corpus(tmp_path / "corpus")
    model = make_vae_model(corpus, tmp_path / "models" / "m.distillgan")
    other = shutil.copy(model, tmp_path / "models" / "n.distillgan")  # a VAE, no vocoder yet
    # epochs adapt to the corpus (to a 24-step target here); saves only on cancel and at the end
    recipe = write_recipe(tmp_path / "tiny.yaml", TINY_VOCODER, checkpoint_interval=100, preview_interval=100)
    train = ["train", "vocoder", "m"]

    first = DDPRun(
        launcher,
        [*train, "--config", str(recipe)],
        tmp_path,
        "first",
        DDP_PROBE_CANCEL_AT="1",
        DDP_PROBE_VOCODER_STEPS="24",
    )
    # cancelled after one step of epoch 1: no epoch completed (epochs are counted as completed ones)
    assert "Checkpoint saved at epoch 0. Resume anytime." in first.stdout, first.describe()
    assert [(r["rank"], r["resume"], r["steps"]) for r in first.runs()] == [(0, False, 1), (1, False, 1)]
    assert first.writes() == [{"event": "write", "rank": 0, "sections": ["vocoder", "vocoder_checkpoint"]}]
    attrs = open_model(model).attrs("vocoder")
    # 2 files of 0.6 s less a 0.2 s held-out clip, in crops of 4 x 2048 samples on each of two
    # ranks: 3 steps an epoch; 24 steps in all (the target is in steps, whatever the world size)
    assert (attrs["status"], attrs["steps"], attrs["total_epochs"]) == ("partial", 1, 8)

    if launcher == "torchrun":
        # a saved state and no --resume/--fresh: under torchrun nobody may be asked (Lightning's
        # launcher asks on rank zero before it starts the others). One error line; nobody waits.
        unsure = DDPRun(launcher, train, tmp_path, "unsure")
        assert unsure.code != 0 and unsure.runs() == [] and unsure.writes() == []
        assert len(unsure.errors()) == 1, unsure.describe()
        assert "pass --resume or --fresh" in unsure.errors()[0]

    # --resume alone: every rank resumes the stored tiny recipe, not the default one
    second = DDPRun(launcher, [*train, "--resume"], tmp_path, "second")
    assert second.code == 0, second.describe()
    resumed_alike(second, steps=24)
    assert second.writes() == [{"event": "write", "rank": 0, "sections": ["vocoder", "vocoder_checkpoint"]}]
    attrs = open_model(model).attrs("vocoder")
    assert (attrs["status"], attrs["epochs_completed"], attrs["steps"]) == ("complete", 8, 24)

    # from another model's vocoder: every rank scores the start alike before its first step
    third = DDPRun(
        launcher,
        ["train", "vocoder", "n", "--config", str(recipe), "--init", "m"],
        tmp_path,
        "third",
        DDP_PROBE_VOCODER_STEPS="6",
    )
    assert third.code == 0, third.describe()
    runs = third.runs()
    assert runs[0]["weights"] == runs[1]["weights"] and runs[0]["kept"] == runs[1]["kept"], third.describe()
    attrs = open_model(other).attrs("vocoder")
    assert runs[0]["kept"][1] is not None and attrs["start_network_mel_l1"] == runs[0]["kept"][1]
    assert attrs["started_from"] == "model m"


def test_vae_trains_and_resumes_under_ddp(tmp_path: Path) -> None:
    launcher = VAE_LAUNCHER
    corpus = write_short_corpus(tmp_path / "corpus")
    recipe = write_recipe(tmp_path / "vae.yaml", TINY_VAE, epochs=3)
    train = ["train", "vae", str(corpus), "--name", "v"]

    first = DDPRun(launcher, [*train, "--config", str(recipe)], tmp_path, "first", DDP_PROBE_CANCEL_AT="1")
    assert "Checkpoint saved at epoch 1. Resume anytime." in first.stdout, first.describe()
    assert [(r["rank"], r["resume"], r["steps"]) for r in first.runs()] == [(0, False, 1), (1, False, 1)]
    assert [(w["rank"], "vae_checkpoint" in w["sections"]) for w in first.writes()] == [(0, True)]

    second = DDPRun(launcher, [*train, "--resume"], tmp_path, "second")
    assert second.code == 0, second.describe()
    summary = json.loads(open_model(tmp_path / "models" / "v.distillgan").attrs("vae")["summary"])
    assert (summary["status"], summary["epochs_completed"]) == ("complete", 3)
    assert summary["steps"] > 1
    resumed_alike(second, steps=summary["steps"])
    assert {w["rank"] for w in second.writes()} == {0}


@pytest.mark.parametrize("world_size", [1, 2, 8])
def test_the_epochs_steps_are_the_loaders_whatever_the_world_size(world_size: int) -> None:
    """The epochs a run needs for its recipe's steps are counted with the loader's own epoch
    length: split over the processes, a file shorter than a crop counted as a crop."""
    lengths = [100] * 10 + [30_000]
    loader = RandomCropLoader([torch.zeros(n) for n in lengths], 2048, 4, world_size=world_size)
    assert steps_per_epoch(lengths, 2048, 4, world_size) == len(loader)
