"""Trainer wiring under DDP: two CPU processes (gloo) train one model; only rank zero writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from distillgan.modelfile import open_model
from distillgan.training import steps_per_epoch, vocoder_epochs_for
from tests.cli.conftest import cli_env, run_until_sigint

pytestmark = pytest.mark.timeout(600)

DDP_SCRIPT = """
import json, os, sys
from pathlib import Path

import distillgan.callbacks.model_file as model_file
from distillgan.audio import load_corpus
from distillgan.lightning_modules.hifigan import load_vocoder_config
from distillgan.modelfile import ModelLock
from distillgan.training import TrainerOptions, train_vocoder

path, corpus, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rank = int(os.environ.get("LOCAL_RANK", "0"))
real_write = model_file.write_model

def logged_write(target, sections, **kwargs):
    with open(log, "a") as f:
        f.write(json.dumps({"rank": rank, "sections": sorted(sections)}) + "\\n")
    return real_write(target, sections, **kwargs)

model_file.write_model = logged_write
cfg = load_vocoder_config(None, {"train": {"epochs": 2}}, recipe="vocoder_tiny")
lock = ModelLock(path, owner="test").acquire() if rank == 0 else None
options = TrainerOptions(accelerator="cpu", devices=2, strategy="ddp")
result = train_vocoder(load_corpus(corpus), path, cfg, lock=lock, options=options)
print("RESULT", json.dumps({"rank": rank, "status": result.status, "steps": result.steps}), flush=True)
"""


def test_two_process_ddp_trains_and_only_rank_zero_writes(tiny_corpus: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    model, log = tmp_path / "ddp.distillgan", tmp_path / "writes.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run(
        [sys.executable, str(script), str(model), str(tiny_corpus), str(log)],
        capture_output=True,
        text=True,
        env=env,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted(
        (json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("RESULT")),
        key=lambda r: r["rank"],
    )
    # an epoch covers the corpus once across both ranks: 4 steps a rank, 2 epochs
    assert results == [{"rank": r, "status": "complete", "steps": 8} for r in (0, 1)]
    writes = [json.loads(line) for line in log.read_text().splitlines()]
    # one write per save (end of epoch 1, end of run), all from rank zero
    assert writes == [{"rank": 0, "sections": ["vocoder", "vocoder_checkpoint"]}] * 2
    attrs = open_model(model).attrs("vocoder")
    assert (attrs["status"], attrs["epochs"], attrs["steps"]) == ("complete", 2, 8)
    assert not open_model(model).has("vocoder_checkpoint")


def test_ctrl_c_on_one_ddp_worker_stops_every_rank(vae_model: Path, models_dir: Path) -> None:
    args = ["train", "vocoder", "tiny", "--recipe", "vocoder_tiny", "--epochs", "40"]
    args += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    code, out, err, seconds = run_until_sigint(args, cli_env(models_dir), target="worker")
    assert code == 130, out + err
    saved = re.search(r"Checkpoint saved at epoch (\d+)\. Resume anytime\.", out)
    assert saved, out + err
    assert out.count("Corpus: 5 files") == 1  # the worker trains silently
    attrs = open_model(vae_model).attrs("vocoder")
    assert attrs["status"] == "partial" and attrs["epoch"] == int(saved.group(1))
    assert 0 < attrs["steps"] < 40 * 4
    assert seconds < 60


def test_adaptive_epochs_never_give_zero_steps() -> None:
    assert steps_per_epoch([100], 8192, 16) == 1
    assert steps_per_epoch([8192 * 16, 1], 8192, 16) == 2
    assert vocoder_epochs_for(1) == 5000  # capped
    assert vocoder_epochs_for(10_000) == 5  # at least a few epochs
    assert vocoder_epochs_for(100, warmup_steps=1000) == 210
