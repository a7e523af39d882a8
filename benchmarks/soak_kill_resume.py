"""Soak: kill -9 a training run at random moments, resume it, again and again.

Each round starts `distillgan train <stage>` (resuming whatever the file holds), waits until
it trains (it holds the model's lock), sleeps a random 0..--max-delay seconds and SIGKILLs it.
After every kill the model file must open with its VAE intact (bit-identical for the vocoder
stage), and the next round must resume from it without being refused. A last run resumes to the
end. Prints one line per round, then one JSON line:

    python benchmarks/soak_kill_resume.py               # 20 rounds of `train vocoder`
    python benchmarks/soak_kill_resume.py --stage vae   # the VAE stage

"progress lost" counts whole epochs the killed run had finished (seen from outside through its
preview files, one per epoch) that the file did not keep; the epoch in flight at the kill is
always lost too (less than one epoch). The VAE stage writes no per-epoch file, so its loss shows
as "?" (it saves every epochs // 10 epochs); a VAE run that reaches its end is replaced by a new
one (--overwrite), which must keep the old model whole until its own first save.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.robustness.harness

from distillgan.errors import DistillganError
from distillgan.generation import load_vae
from distillgan.modelfile import open_model, vocoder_record
from tests.robustness.harness import (
    TINY_VAE,
    TINY_VOCODER,
    CliProcess,
    holds_lock,
    make_vae_model,
    preview_epochs,
    run_cli,
    temp_files,
    tensor_bits,
    vae_summary,
    wait_until,
    write_recipe,
    write_short_corpus,
)


def saved_epochs(stage: str, model: Path) -> int:
    """Epochs the model file holds for ``stage`` (a finished run's too)."""
    if stage == "vocoder":
        reader = open_model(model)
        return (vocoder_record(reader).epochs_completed or 0) if reader.has("vocoder") else 0
    return vae_summary(model)["epochs_completed"] if model.exists() else 0


def has_state(stage: str, model: Path) -> bool:
    return model.exists() and open_model(model).has(f"{stage}_checkpoint")


def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="distillgan-soak-"))
    corpus = write_short_corpus(work / "corpus")
    models, logs = work / "models", work / "logs"
    model = models / "m.distillgan"
    interval = args.checkpoint_interval
    if args.stage == "vocoder":
        make_vae_model(corpus, model)
        recipe = write_recipe(work / "vocoder.yaml", TINY_VOCODER, checkpoint_interval=interval)
        vae_before = tensor_bits(model, "vae")
        base = ["train", "vocoder", "m", "--config", str(recipe), "--epochs", str(args.epochs)]
    else:
        # the VAE stage saves every epochs // 10 epochs
        recipe = write_recipe(work / "vae.yaml", TINY_VAE, epochs=args.epochs)
        interval = max(1, args.epochs // 10)
        base = ["train", "vae", str(corpus), "--name", "m", "--config", str(recipe)]

    rounds: list[dict[str, Any]] = []
    for n in range(1, args.runs + 1):
        resuming = has_state(args.stage, model)
        before = saved_epochs(args.stage, model) if resuming else 0
        if resuming:
            cmd = [*base, "--resume"]
        elif model.exists() and args.stage == "vae":
            cmd = [*base, "--overwrite"]  # the last round trained to the end: start a new run
        elif args.stage == "vocoder" and open_model(model).has("vocoder"):
            cmd = [*base, "--fresh", "--yes"]
        else:
            cmd = base
        delay = rng.uniform(0.0, args.max_delay)
        started = time.time()
        record: dict[str, Any] = {
            "round": n,
            "resumed_from": before if resuming else None,
            "delay_s": round(delay, 2),
        }
        finished, mid_write, continues, reached = False, False, True, before
        with CliProcess(cmd, models_dir=models, log_dir=logs, label=f"round-{n}") as run:
            try:
                wait_until(
                    lambda run=run: holds_lock(model, run) or not run.running(),
                    timeout=600,
                    what="the trainer to start",
                    interval=0.02,
                )
                time.sleep(delay)
                if run.running():
                    run.stop()  # freeze first: what it has done so far is exactly what we read next
                    mid_write = bool(temp_files(model))
                else:
                    finished = True  # it trained to the end before the kill
                if args.stage == "vocoder":
                    done = [e for e in preview_epochs(models, "m") if _mtime(models, e) >= started]
                    reached = max([before, *done])
                    continues = not done or min(done) == before + 1  # exactly after the saved epoch
                else:
                    reached = None  # the VAE's finished epochs show only in the file
                run.kill()
                finished = finished or run.proc.returncode == 0  # it may end between check and kill
                started_ok = finished or run.killed
                if not started_ok:
                    record["error"] = run.describe().splitlines()[0]
            except AssertionError as exc:
                started_ok, continues = False, False
                record["error"] = str(exc).splitlines()[0]
        after = saved_epochs(args.stage, model) if model.exists() else 0
        intact = True
        try:
            load_vae(model)
            if args.stage == "vocoder":
                intact = tensor_bits(model, "vae") == vae_before
        except (DistillganError, OSError) as exc:
            intact = False
            record["error"] = str(exc)
        lost = None if reached is None else max(reached, after) - after
        record.update(
            resume_ok=started_ok and intact and continues and after >= before,
            finished=finished,
            saved_before=before,
            saved_after=after,
            reached=reached,
            lost_epochs=lost,
            killed_mid_write=mid_write,
        )
        rounds.append(record)
        what = "trained to the end" if finished else f"killed {delay:4.1f} s after it locked"
        print(
            f"round {n:2d}: {'resume' if resuming else 'start '} from {before:3d}, {what}"
            f"{' (mid-write)' if mid_write else '':12s} -> file keeps {after:3d}, lost {'?' if lost is None else lost}"
            f" epoch(s){'' if record['resume_ok'] else '  FAILED: ' + record.get('error', 'see logs')}",
            flush=True,
        )

    if args.stage == "vocoder":
        final_epochs = saved_epochs(args.stage, model) + 1
        final_cmd = ["train", "vocoder", "m", "--resume", "--epochs", str(final_epochs)]
    else:
        final_cmd = [*base, "--resume" if has_state(args.stage, model) else "--overwrite"]
    final = run_cli(final_cmd, models_dir=models, log_dir=logs, label="final", timeout=1200)
    final_ok = final.proc.returncode == 0 and "Traceback" not in final.stderr
    print(
        f"final run to the end: {'ok' if final_ok else 'FAILED'} (exit {final.proc.returncode})", flush=True
    )
    return {
        "stage": args.stage,
        "runs": len(rounds),
        "resumes_ok": sum(r["resume_ok"] for r in rounds),
        "max_lost_epochs": max(
            (r["lost_epochs"] for r in rounds if r["lost_epochs"] is not None), default=None
        ),
        "checkpoint_interval_epochs": interval,
        "kills_mid_write": sum(r["killed_mid_write"] for r in rounds),
        "final_resume_ok": final_ok,
        "workdir": str(work),
    }


def _mtime(models: Path, epoch: int) -> float:
    return (models / "runs" / "m" / "previews" / f"epoch-{epoch:04d}_clip-1.wav").stat().st_mtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--stage", choices=["vocoder", "vae"], default="vocoder")
    parser.add_argument("--epochs", type=int, default=400, help="total epochs of the run (never reached)")
    parser.add_argument("--checkpoint-interval", type=int, default=1, help="vocoder stage: epochs per save")
    parser.add_argument(
        "--max-delay", type=float, default=12.0, help="kill within this many seconds of training"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep everything here (default: a temp folder)")
    args = parser.parse_args()
    if sys.platform != "linux":
        sys.exit("this soak needs Linux (SIGSTOP/SIGKILL, /proc)")
    summary = soak(args)
    print(json.dumps(summary))
    sys.exit(0 if summary["resumes_ok"] == summary["runs"] and summary["final_resume_ok"] else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
