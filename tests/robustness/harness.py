"""Real `distillgan` CLI processes for the robustness tests and the kill-and-resume soak.

Everything here drives the product from the outside, as a user's terminal would: separate
processes, SIGKILL at chosen moments, the model file read while a trainer writes it. Shared by
``tests/robustness`` and ``benchmarks/soak_kill_resume.py`` (which puts the repository root on
``sys.path``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from distillgan.modelfile import open_model, vocoder_record

T = TypeVar("T")

# `distillgan ARGS` through the real entry point (error handling and exit codes included)
CLI = [
    sys.executable,
    "-c",
    "import sys; from distillgan.cli.main import main; sys.argv[0] = 'distillgan'; main()",
]

# Tiny recipes: every epoch of either stage takes about a second on one busy CPU core.
TINY_VAE: dict[str, Any] = {
    "model": {"latent_dim": 4, "channels": [16, 16], "kernel_size": 3},
    "train": {"chunk_frames": 16, "batch_size": 4, "epochs": 2},
}
TINY_VOCODER: dict[str, Any] = {
    "generator": {
        "upsample_initial_channel": 32,
        "resblock_kernel_sizes": [3],
        "resblock_dilations": [[1, 3]],
        "mpd_periods": [2, 3],
        "discriminator_channel_divisor": 16,
    },
    "train": {
        "init": "scratch",  # a tiny generator: not the prior's shape
        "segment_samples": 2048,
        "batch_size": 4,
        "warmup_steps": 0,
        "val_clips": 1,
        "val_clip_seconds": 0.2,
        "checkpoint_interval": 1,
        "preview_interval": 1,  # a preview file per epoch: the outside view of epochs done
        "precision": "32",
    },
}
PREVIEW_RE = re.compile(r"epoch-(\d+)_clip-1\.wav")


def write_short_corpus(folder: Path, seconds: tuple[float, ...] = (0.6, 0.6)) -> Path:
    """A few short synthesised 44.1 kHz files: ~6 vocoder steps per epoch with TINY_VOCODER."""
    from distillgan.audio import SAMPLE_RATE, write_audio
    from distillgan.examples import synth_bell, synth_pluck

    folder.mkdir(parents=True, exist_ok=True)
    makers = (synth_pluck, synth_bell)
    for i, length in enumerate(seconds):
        write_audio(folder / f"take {i + 1}.wav", makers[i % 2](length, seed=i + 1), SAMPLE_RATE)
    return folder


def write_recipe(path: Path, recipe: dict[str, Any], **train: Any) -> Path:
    """``recipe`` with ``train`` keys overridden, as a YAML file for ``--config``."""
    data = {**recipe, "train": {**recipe["train"], **train}}
    path.write_text(yaml.safe_dump(data))
    return path


def make_vae_model(corpus: Path, path: Path) -> Path:
    """``path`` as `train vae` leaves it (a tiny untrained VAE and ``corpus``'s manifest), written
    in-process in a fraction of a second, ready for `train vocoder`."""
    from distillgan.corpus import build_manifest, load_corpus
    from distillgan.lightning_modules.vae import VAEModule
    from distillgan.modelfile import ModelLock, Section, StageRecord, write_model
    from distillgan.recipes import load_vae_config

    cfg = load_vae_config(None, TINY_VAE)
    progress = StageRecord(status="complete", epoch=2, epochs_completed=2, total_epochs=2, steps=2)
    sections = VAEModule(cfg).model_file_sections(progress)
    sections["dataset"] = Section(attrs={"manifest": build_manifest(load_corpus(corpus))})
    path.parent.mkdir(parents=True, exist_ok=True)
    with ModelLock(path, owner="test setup") as lock:
        write_model(path, sections, lock=lock, create=True)
    return path


def cli_env(models_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DISTILLGAN_MODELS_DIR=str(models_dir),
        # one thread per process: several trainers and the test share two cores
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        COLUMNS="200",  # Rich: no wrapped lines in what the tests read
        PYTHONUNBUFFERED="1",
    )
    env.pop("LOCAL_RANK", None)
    env.pop("DISTILLGAN_RUN_DECISION", None)
    return env


class CliProcess:
    """One `distillgan ...` process; output goes to files (no pipe can fill up and block it)."""

    def __init__(self, args: list[str], *, models_dir: Path, log_dir: Path, label: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.out_path = log_dir / f"{label}.out"
        self.err_path = log_dir / f"{label}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*CLI, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=cli_env(models_dir),
                start_new_session=True,  # our own process group: killed as a whole
            )
        self.pid = self.proc.pid
        self.killed = False

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def describe(self) -> str:
        return (
            f"`distillgan {' '.join(self.args)}` (exit {self.proc.returncode})\n{self.stdout}\n{self.stderr}"
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"timed out after {timeout:.0f} s: {self.describe()}") from None

    def kill(self) -> None:
        """SIGKILL (no handler runs, nothing is flushed or released), even while stopped."""
        if self.running():
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """Freeze the process where it is (SIGSTOP) and wait until the kernel says it is stopped."""
        os.killpg(self.pid, signal.SIGSTOP)
        stat = Path(f"/proc/{self.pid}/stat")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                # the state letter follows the parenthesised command name
                if stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    return
            except (OSError, IndexError):
                time.sleep(0.05)  # no procfs: the signal has long landed after this
                return
            time.sleep(0.001)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # a failing test never leaves a trainer behind


def run_cli(
    args: list[str], *, models_dir: Path, log_dir: Path, label: str, timeout: float = 300
) -> CliProcess:
    """Run ``distillgan ARGS`` to the end."""
    process = CliProcess(args, models_dir=models_dir, log_dir=log_dir, label=label)
    process.wait(timeout)
    return process


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    watch: CliProcess | None = None,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll until ``condition()`` returns something truthy; fail early if ``watch`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if watch is not None and not watch.running():
            raise AssertionError(f"process ended while waiting for {what}: {watch.describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def temp_files(model: Path) -> list[Path]:
    """The in-flight (or orphaned) temp files of writes of ``model``."""
    prefix = f".{model.name}.tmp-"
    return sorted(p for p in model.parent.iterdir() if p.name.startswith(prefix))


def freeze_mid_write(process: CliProcess, model: Path, *, timeout: float, fraction: float = 0.25) -> Path:
    """Catch ``process`` in the middle of a write of ``model``: SIGSTOP it while its temp file
    exists (the atomic replace has not happened yet) and already holds ``fraction`` of the
    current file's size. Returns the temp file; the process stays stopped for the caller to
    SIGKILL. Polls every millisecond; a checkpoint write takes ~100+ ms."""
    prefix = f".{model.name}.tmp-{process.pid}-"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise AssertionError(f"process ended before a write was caught: {process.describe()}")
        for name in os.listdir(model.parent):
            temp = model.parent / name
            if not name.startswith(prefix):
                continue
            with contextlib.suppress(FileNotFoundError):
                if temp.stat().st_size < fraction * model.stat().st_size:
                    continue  # not far enough yet
                process.stop()
                if temp.exists():
                    return temp
                process.resume()  # the write finished in between: catch the next one
        time.sleep(0.001)
    raise AssertionError(f"no write of {model} caught within {timeout:.0f} s")


# ---------------------------------------------------------------------------------------------
# Progress as the model file and the preview folder show it


def vocoder_epochs_saved(model: Path) -> int:
    """Completed epochs in the file's last complete vocoder checkpoint (0: none yet)."""
    reader = open_model(model)
    if not reader.has("vocoder_checkpoint"):
        return 0
    return vocoder_record(reader).epochs_completed or 0


def vae_summary(model: Path) -> dict[str, Any]:
    summary = open_model(model).attrs("vae")["summary"]
    return json.loads(summary) if isinstance(summary, str) else summary


def preview_epochs(models_dir: Path, name: str) -> list[int]:
    """Epochs whose end a vocoder run has reached, from its preview files (one per epoch)."""
    folder = models_dir / "runs" / name / "previews"
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := PREVIEW_RE.fullmatch(p.name)))


def lock_holder(model: Path) -> dict[str, Any] | None:
    """What the lock file says about its (possibly dead) holder; None when free or never taken."""
    try:
        text = model.with_name(model.name + ".lock").read_text()
        return json.loads(text) if text.strip() else None
    except (FileNotFoundError, ValueError):  # ValueError: read while the holder writes it
        return None


def holds_lock(model: Path, process: CliProcess) -> bool:
    """``process`` holds the model's lock: it has got past its checks and is training."""
    return (lock_holder(model) or {}).get("pid") == process.pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def tensor_bits(model: Path, section: str, prefix: str = "") -> dict[str, bytes]:
    """Every tensor of a stage as raw bytes: equal means bit-identical (NaN payloads included)."""
    tensors = open_model(model).tensors(section, prefix=prefix, allow_non_finite=True)
    return {name: t.contiguous().numpy().tobytes() for name, t in tensors.items()}
