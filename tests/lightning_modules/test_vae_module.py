"""The VAE stage end to end: a tiny corpus trains into a loadable model whose validation loss fell."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import pytest
import torch

from distillgan.corpus import load_corpus
from distillgan.errors import ModelFileError
from distillgan.generation import load_vae
from distillgan.lightning_modules.vae import VAEDataModule
from distillgan.modelfile import SCHEMA_VERSION, ModelLock, Section, open_model, pack_tree, write_model
from distillgan.networks.vae import CORPUS_LIMITS, NO_LIMIT, MelVAE
from distillgan.progress import CancelToken, ProgressEvent
from distillgan.recipes import load_vae_config
from distillgan.training import train_vae

TINY = {
    "model": {"latent_dim": 4, "channels": [32, 32], "kernel_size": 3},
    # on a CPU, whatever this machine has
    "train": {
        "chunk_frames": 16,
        "batch_size": 4,
        "lr": 0.003,
        "kl_warmup_steps": 20,
        "epochs": 12,
        "accelerator": "cpu",
    },
}


def run(corpus_dir: Path, path: Path, **kwargs: object) -> object:
    cfg = load_vae_config(None, TINY)
    with ModelLock(path, owner="test") as lock:
        return train_vae(load_corpus(corpus_dir), path, cfg, lock=lock, **kwargs)


def test_five_files_train_into_a_loadable_model_whose_validation_loss_fell(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.distillgan"
    events: list[ProgressEvent] = []
    result = run(tiny_corpus, path, listener=events.append)
    assert result.status == "complete" and result.epochs_completed == 12 and result.steps > 0

    reader = open_model(path)
    assert set(reader.sections()) == {"dataset", "vae"}  # resumable state dropped at the end
    summary = json.loads(reader.attrs("vae")["summary"])
    assert summary["status"] == "complete"
    assert summary["val_recon_last"] < 0.8 * summary["val_recon_first"]

    cfg = load_vae_config(None, json.loads(reader.attrs("vae")["config"]))
    vae = MelVAE(cfg.model)
    expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    vae.load_state_dict(reader.tensors("vae", expected, prefix="weights"))
    assert float(vae.mel_std.min()) > 0  # corpus statistics travelled with the weights

    manifest = reader.attrs("dataset")["manifest"]
    assert sorted(f["path"] for f in manifest["files"]) == sorted(p.name for p in tiny_corpus.iterdir())
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] in ("end", "checkpoint") and "epoch" in kinds


def test_cancel_keeps_a_resumable_vae_and_resume_finishes_it(tiny_corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny.distillgan"
    token = CancelToken()

    def cancel_after_some_steps(event: ProgressEvent) -> None:
        if event.kind == "step" and event.step >= 5:
            token.cancel()

    first = run(tiny_corpus, path, listener=cancel_after_some_steps, cancel=token)
    assert first.cancelled and first.status == "partial"
    reader = open_model(path)
    assert reader.has("vae_checkpoint") and reader.has("vae") and reader.has("dataset")
    assert json.loads(reader.attrs("vae")["summary"])["status"] == "partial"

    second = run(tiny_corpus, path, resume=True)
    assert second.status == "complete" and second.epochs_completed == 12
    assert not open_model(path).has("vae_checkpoint")


def test_a_run_saved_before_the_vae_had_limits_resumes_with_limits_fitted_now(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.distillgan"
    token = CancelToken()
    run(tiny_corpus, path, listener=lambda e: token.cancel() if e.kind == "step" else None, cancel=token)
    checkpoint = open_model(path).tree("vae_checkpoint")
    for name in CORPUS_LIMITS:  # as an older version saved it
        del checkpoint["state_dict"][f"vae.{name}"]
    with ModelLock(path, owner="test") as lock:
        write_model(path, {"vae_checkpoint": pack_tree(checkpoint)}, lock=lock)

    assert run(tiny_corpus, path, resume=True).status == "complete"
    vae = load_vae(path)
    assert float(vae.frame_ceiling) < NO_LIMIT and float(vae.mel_ceiling.max()) < NO_LIMIT


def fresh_run(corpus_dir: Path, path: Path, **kwargs: object) -> object:
    cfg = load_vae_config(None, {**TINY, "train": {**TINY["train"], "epochs": 2}})
    with ModelLock(path, owner="test") as lock:
        return train_vae(load_corpus(corpus_dir), path, cfg, lock=lock, **kwargs)


def test_a_fresh_run_replaces_a_damaged_file_at_its_first_save_not_before(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / "old.distillgan"
    damaged = b"not a model file at all" * 100
    path.write_bytes(damaged)
    at_start: list[bytes] = []

    def listener(event: ProgressEvent) -> None:
        if event.kind == "start":  # training has begun, nothing saved yet
            at_start.append(path.read_bytes())

    result = fresh_run(tiny_corpus, path, listener=listener)
    assert at_start == [damaged]
    assert result.status == "complete" and set(open_model(path).sections()) == {"dataset", "vae"}


@contextlib.contextmanager
def newer_schema(path: Path) -> Iterator[None]:
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    yield


@contextlib.contextmanager
def open_for_writing_elsewhere(path: Path) -> Iterator[None]:
    """HDF5's file lock, as another program holding the file open for writing takes it."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("make_unreadable", "message"),
    [(newer_schema, "newer distillgan"), (open_for_writing_elsewhere, "open for writing in another program")],
)
def test_a_fresh_run_refuses_a_model_it_cannot_read_and_keeps_it(
    tiny_corpus: Path, tmp_path: Path, make_unreadable: Any, message: str
) -> None:
    path = tmp_path / "old.distillgan"
    with ModelLock(path, owner="test") as lock:
        write_model(path, {"vae": Section(attrs={"summary": {"status": "complete"}})}, lock=lock, create=True)
    with make_unreadable(path):
        before = path.read_bytes()
        with pytest.raises(ModelFileError, match=message):
            fresh_run(tiny_corpus, path)
        assert path.read_bytes() == before


def test_validation_split_works_for_five_short_files(tiny_corpus: Path) -> None:
    cfg = load_vae_config(None, TINY)
    corpus = load_corpus(tiny_corpus)
    data = VAEDataModule([f.audio for f in corpus.files], cfg)
    assert len(data.val_chunks) >= 1
    assert all(c.shape == (128, 16) for c in data.val_chunks)
    train_frames = sum(m.shape[-1] for m in data.train_mels)
    all_frames = sum(m.shape[-1] for m in data.mels)
    assert train_frames == all_frames - 16 * len(data.val_chunks)  # held-out frames never train


@pytest.mark.parametrize("files", [1, 5])
def test_an_epoch_is_never_empty(tmp_path: Path, files: int) -> None:
    from distillgan.audio import write_audio
    from distillgan.examples import synth_pluck
    from distillgan.training import steps_per_epoch

    folder = tmp_path / "c"
    folder.mkdir()
    for i in range(files):
        write_audio(folder / f"{i}.wav", synth_pluck(0.6, seed=i), 44_100)
    cfg = load_vae_config(None, {"train": {"batch_size": 64}})
    data = VAEDataModule([f.audio for f in load_corpus(folder).files], cfg)
    assert steps_per_epoch([m.shape[-1] for m in data.train_mels], 64, 64) == 1
    assert torch.isfinite(torch.stack(data.val_chunks)).all()
