"""Cancel, save into the model file, resume: exactly the run that was never interrupted."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from distillgan.callbacks import ModelFileCheckpointIO
from distillgan.corpus import load_corpus
from distillgan.errors import TrainingError
from distillgan.lightning_modules.hifigan import HiFiGANModule
from distillgan.modelfile import ModelLock, Section, open_model, write_model
from distillgan.progress import ProgressEvent
from distillgan.recipes import load_vocoder_config
from distillgan.training import train_vocoder
from tests.training_runs import train_tiny_vocoder as train

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS_PER_EPOCH = 8  # the tiny recipe's fixed budget


def assert_same_tree(a: Any, b: Any, where: str = "") -> None:
    """Equal nested checkpoints: tensors and arrays bit for bit, everything else by value."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: {set(a) ^ set(b)}"
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize(
    ("cancel_after", "saved_at_epoch"),
    [(1, 1), (STEPS_PER_EPOCH - 1, 1)],
    ids=["in-the-warm-up", "on-the-last-batch-of-an-epoch"],
)
def test_cancel_then_resume_equals_the_uninterrupted_run(
    vae_model: Path, tiny_corpus: Path, tmp_path: Path, cancel_after: int, saved_at_epoch: int
) -> None:
    reference = tmp_path / "reference.distillgan"
    shutil.copy(vae_model, reference)
    full = train(reference, tiny_corpus)
    assert (full.status, full.steps, full.epochs_completed) == ("complete", 2 * STEPS_PER_EPOCH, 2)

    vae_before = open_model(vae_model).tensors("vae")
    stopped = train(vae_model, tiny_corpus, cancel_after=cancel_after)
    # CancelOnRequest sees the token at the end of the step after the one that cancelled
    assert stopped.cancelled and stopped.status == "partial"
    assert (stopped.epoch, stopped.steps) == (saved_at_epoch, cancel_after + 1)

    # what the cancel left in the file: the VAE untouched, a partial vocoder, a loadable state
    reader = open_model(vae_model)
    assert set(reader.sections()) == {"dataset", "vae", "vocoder", "vocoder_checkpoint"}
    vae_after = reader.tensors("vae")
    assert vae_after.keys() == vae_before.keys()
    assert all(torch.equal(vae_after[k], vae_before[k]) for k in vae_before)
    attrs = reader.attrs("vocoder")
    assert (attrs["status"], attrs["steps"], attrs["epoch"]) == ("partial", cancel_after + 1, saved_at_epoch)
    checkpoint = ModelFileCheckpointIO("vocoder", lock=None).load_checkpoint(vae_model)
    assert checkpoint["distillgan"]["steps_trained"] == cancel_after + 1
    module = HiFiGANModule(load_vocoder_config(recipe="vocoder_tiny"))
    module.load_state_dict(checkpoint["state_dict"])  # strict: generator and discriminators
    assert len(checkpoint["optimizer_states"]) == 2 and len(checkpoint["lr_schedulers"]) == 2

    resumed = train(vae_model, tiny_corpus, resume=True)
    assert (resumed.status, resumed.steps, resumed.epochs_completed) == ("complete", 2 * STEPS_PER_EPOCH, 2)
    expected = open_model(reference).tree("vocoder_checkpoint")
    got = open_model(vae_model).tree("vocoder_checkpoint")
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "loops", "distillgan"):
        assert_same_tree(got[key], expected[key], key)
    assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"])
    assert open_model(vae_model).tensors("vocoder").keys() == open_model(reference).tensors("vocoder").keys()
    for key, value in open_model(reference).tensors("vocoder").items():
        assert torch.equal(open_model(vae_model).tensors("vocoder")[key], value), key


def test_saves_every_interval_and_drops_the_training_state_at_the_end(
    vae_model: Path, tiny_corpus: Path
) -> None:
    events: list[ProgressEvent] = []
    cfg = load_vocoder_config(
        None, {"train": {"epochs": 3, "checkpoint_interval": 2, "accelerator": "cpu"}}, recipe="vocoder_tiny"
    )
    with ModelLock(vae_model, owner="test") as lock:
        result = train_vocoder(
            load_corpus(tiny_corpus),
            vae_model,
            cfg,
            lock=lock,
            listener=events.append,
        )
    saves = [(e.epoch, e.message) for e in events if e.kind == "checkpoint"]
    assert saves == [(2, "partial"), (3, "complete")]
    assert result.status == "complete" and result.epochs_completed == 3
    reader = open_model(vae_model)
    assert set(reader.sections()) == {"dataset", "vae", "vocoder"}
    attrs = reader.attrs("vocoder")
    assert (attrs["status"], attrs["epochs_completed"], attrs["steps"]) == (
        "complete",
        3,
        3 * STEPS_PER_EPOCH,
    )
    history = attrs["val_mel_l1_history"]
    assert len(history) == 3 and attrs["val_mel_l1_last"] == history[-1]
    # the kept epoch is the one whose network did best on the held-out clips (ties: the later);
    # the render's mel error of that epoch is stored beside
    network = attrs["val_network_mel_l1_history"]
    assert len(network) == 3 and attrs["val_network_mel_l1_best"] == min(network)
    kept = len(network) - network[::-1].index(min(network))
    assert attrs["best_epoch"] == kept and attrs["val_mel_l1_best"] == history[kept - 1]


def test_non_finite_values_never_reach_the_model_file(vae_model: Path) -> None:
    before = vae_model.read_bytes()
    io = ModelFileCheckpointIO("vocoder", ModelLock(vae_model, owner="test").acquire())
    state = {"state_dict": {"w": torch.tensor([1.0, float("nan")])}}
    with pytest.raises(TrainingError, match="non-finite"):
        io.save_checkpoint(state, vae_model)
    sections = {"vocoder": Section(tensors={"generator/w": torch.tensor([float("inf")])})}
    with pytest.raises(TrainingError, match="non-finite"):
        io.save_checkpoint({"ok": torch.zeros(1)}, vae_model, storage_options={"sections": sections})
    assert vae_model.read_bytes() == before
    io.lock.release()  # type: ignore[union-attr]


def test_checkpoint_io_round_trips_lightning_state_without_pickle(vae_model: Path) -> None:
    state = {
        "epoch": 3,
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": [{"lr": 1e-4}]}],
        "rng": (1, (2, 3), None),
        "state_dict": {"generator.w": torch.arange(4, dtype=torch.float32)},
    }
    with ModelLock(vae_model, owner="test") as lock:
        ModelFileCheckpointIO("vocoder", lock).save_checkpoint(state, vae_model)
        assert_same_tree(ModelFileCheckpointIO("vocoder", lock).load_checkpoint(vae_model), state)
        write_model(vae_model, {"vocoder_checkpoint": None}, lock=lock)
    assert not open_model(vae_model).has("vocoder_checkpoint")


class PoisonFrom(L.Callback):
    """NaN batches from generator step ``step`` on: every later step is non-finite."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: torch.Tensor, *args: Any
    ) -> None:
        if pl_module.steps_trained >= self.step:
            batch.fill_(float("nan"))


def test_repeated_non_finite_steps_stop_and_leave_only_finite_weights_in_the_file(
    vae_model: Path, tiny_corpus: Path
) -> None:
    cfg = load_vocoder_config(
        None, {"train": {"max_nonfinite_steps": 4, "accelerator": "cpu"}}, recipe="vocoder_tiny"
    )
    with (
        ModelLock(vae_model, owner="test") as lock,
        pytest.raises(TrainingError, match="non-finite losses and were skipped"),
    ):
        train_vocoder(
            load_corpus(tiny_corpus),
            vae_model,
            cfg,
            lock=lock,
            extra_callbacks=[PoisonFrom(3)],
        )
    reader = open_model(vae_model)
    attrs = reader.attrs("vocoder")
    assert (attrs["status"], attrs["steps"], attrs["nonfinite_skipped"]) == ("partial", 8, 5)
    tensors = {**reader.tensors("vocoder"), **reader.tensors("vocoder_checkpoint")}
    floats = [t for t in tensors.values() if t.is_floating_point()]
    assert len(floats) > 50 and all(torch.isfinite(t).all() for t in floats)
