"""`distillgan ARGS` that records what each process of a DDP run did, for tests/robustness/test_ddp.py.

Run as a script in place of the `distillgan` entry point: by torchrun, or directly, and then again
by Lightning's own launcher, which starts the other processes with this script's command line.
Appends JSON lines to ``$DDP_PROBE_LOG``: one per model-file write (``write``: the writing
process's rank) and one per finished training run (``run``: rank, world size, whether it resumed,
steps, a digest of the module's weights). ``$DDP_PROBE_CANCEL_AT=N`` makes rank zero ask the run to
stop after N steps, as Ctrl+C does; ``$DDP_PROBE_VOCODER_STEPS`` replaces the vocoder recipe's
target of generator steps (20 000), to check adaptive epochs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import distillgan.callbacks.model_file as model_file
from distillgan import training
from distillgan.callbacks import CancelOnRequest
from distillgan.cli.main import main

LOG = os.environ["DDP_PROBE_LOG"]


def record(**entry: Any) -> None:
    with open(LOG, "a") as f:  # one short line per write: appends from two processes stay whole
        f.write(json.dumps(entry) + "\n")


def env_rank() -> int:
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


real_write = model_file.write_model


def logged_write(path: Any, sections: Any, **kwargs: Any) -> Any:
    record(event="write", rank=env_rank(), sections=sorted(sections))
    return real_write(path, sections, **kwargs)


real_fit = training._fit


def logged_fit(
    trainer: Any, module: Any, datamodule: Any, model_path: Any, resume: bool, checkpoint: Any
) -> None:
    real_fit(trainer, module, datamodule, model_path, resume, checkpoint)
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    record(
        event="run",
        rank=trainer.global_rank,
        world_size=trainer.world_size,
        resume=resume,
        steps=int(trainer.fit_loop.epoch_loop.batch_progress.total.processed),
        weights=digest.hexdigest(),
        # the vocoder's kept epoch and its start's held-out figure (None for the VAE)
        kept=[getattr(module, "best_epoch", None), getattr(module, "start_network_mel_l1", None)],
    )


real_batch_end = CancelOnRequest.on_train_batch_end


def cancelling_batch_end(self: CancelOnRequest, trainer: Any, pl_module: Any, *args: Any) -> None:
    cancel_at = int(os.environ.get("DDP_PROBE_CANCEL_AT", "0"))
    steps = trainer.fit_loop.epoch_loop.batch_progress.total.processed
    if cancel_at and trainer.is_global_zero and steps >= cancel_at:
        self.token.cancel()
    real_batch_end(self, trainer, pl_module, *args)


model_file.write_model = logged_write
training._fit = logged_fit
CancelOnRequest.on_train_batch_end = cancelling_batch_end
if "DDP_PROBE_VOCODER_STEPS" in os.environ:
    training.VOCODER_TARGET_STEPS = int(os.environ["DDP_PROBE_VOCODER_STEPS"])
main()
