"""The typed model-file records: round trips through the writers, hostile values read as None,
and files of schema 1 (the vocoder's completed-epoch count named ``epochs``) read and rewritten
under this schema's names."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import h5py
import pytest
import torch

from distillgan import __version__
from distillgan.errors import ModelFileError
from distillgan.modelfile import (
    SCHEMA_VERSION,
    DatasetRecord,
    DiscriminatorsRecord,
    ModelLock,
    Section,
    VAERecord,
    VocoderRecord,
    dataset_record,
    discriminators_record,
    file_record,
    open_model,
    pack_tree,
    vae_record,
    vocoder_record,
    write_model,
)
from distillgan.networks.hifigan import Discriminators
from distillgan.runs import read_model_state
from distillgan.vocoders.hifigan import read_vocoder_info
from distillgan.vocoders.prior import DISCRIMINATORS, PRIOR_PATH, export, read_starting_weights
from tests.vocoders.model_files import TINY_HIFIGAN, write_model_file

VOCODER = VocoderRecord(
    status="partial",
    epoch=8,
    epochs_completed=7,
    total_epochs=40,
    steps=70,
    type="hifigan_v2",
    config={"upsample_initial_channel": 16},
    train_config={"lr": 0.0002},
    warmup_steps=5,
    val_mel_l1_best=0.5,
    val_mel_l1_last=0.75,
    val_mel_l1_history=(1.0, 0.5, 0.75),
    val_network_mel_l1_best=1.25,
    val_network_mel_l1_history=(1.5, 1.25, 1.375),
    best_epoch=6,
    bigvgan_val_mel_l1=0.4,
    held_out_files=("a.wav", "b.wav"),
    started_from="prior",
    nonfinite_skipped=1,
    grad_scaler_skipped=2,
    trained_at="2026-12-01T20:00:00+00:00",
)


def write(path: Path, sections: dict[str, Section | None], *, create: bool = True) -> Path:
    with ModelLock(path, owner="test") as lock:
        write_model(path, sections, lock=lock, create=create)
    return path


def make_schema_1(path: Path) -> None:
    """Turn a file of this schema into one as schema 1 wrote it: the vocoder's completed-epoch
    count is ``epochs`` (everything else was named as now)."""
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 1
        if "vocoder" in f:
            attrs = f["vocoder"].attrs
            attrs["epochs"] = attrs["epochs_completed"]
            del attrs["epochs_completed"]


def set_attrs(path: Path, section: str, values: dict[str, Any]) -> None:
    """Store each value as the writer stores attributes (JSON text), bypassing the records."""
    with h5py.File(path, "r+") as f:
        for key, value in values.items():
            f[section].attrs[key] = json.dumps(value)


# ---------------------------------------------------------------------------------------------
# Round trips


def test_every_record_round_trips_through_the_file(tmp_path: Path) -> None:
    vae = VAERecord(
        status="complete",
        epoch=3,
        epochs_completed=3,
        total_epochs=3,
        steps=30,
        config={"model": {"latent_dim": 4}},
        val_recon_first=1.0,
        val_recon_last=0.25,
        val_recon_best=0.25,
    )
    dataset = DatasetRecord({"root": "/audio", "files": [{"path": "a.wav", "size": 10}]})
    path = write(
        tmp_path / "m.distillgan",
        {
            "vae": Section(attrs=vae.to_attrs()),
            "dataset": Section(attrs=dataset.to_attrs()),
            "vocoder": Section(attrs=VOCODER.to_attrs()),
            DISCRIMINATORS: Section(attrs=DiscriminatorsRecord(8).to_attrs()),
        },
    )
    reader = open_model(path)
    assert vae_record(reader) == vae
    assert dataset_record(reader) == dataset
    assert vocoder_record(reader) == VOCODER
    assert discriminators_record(reader) == DiscriminatorsRecord(8)
    file = file_record(reader)
    assert (file.schema_version, file.app_version) == (SCHEMA_VERSION, __version__) == (2, __version__)
    assert file.created is not None and file.updated is not None
    # the file keeps the format's layout: configs and the VAE summary as JSON text, one name per fact
    raw = reader.attrs("vocoder")
    assert json.loads(raw["config"]) == VOCODER.config and raw["epochs_completed"] == 7
    assert "epochs" not in raw
    assert json.loads(reader.attrs("vae")["summary"]) == vae.summary()


def test_the_modules_write_what_the_records_read(tmp_path: Path) -> None:
    path = write_model_file(
        tmp_path / "m.distillgan", vocoder={"status": "partial", "epochs": 5, "total_epochs": 50}
    )
    state = read_model_state(path)
    assert state.vae is not None and state.vae.complete and state.vae.epochs_completed == 3
    assert (state.vae.val_recon_first, state.vae.val_recon_best) == (1.0, 0.7)
    assert state.vae.config is not None and state.vae.config["model"]["latent_dim"] == 4
    vocoder = state.vocoder
    assert vocoder is not None and (vocoder.status, vocoder.epochs_completed, vocoder.total_epochs) == (
        "partial",
        5,
        50,
    )
    assert vocoder.config is not None and vocoder.config["upsample_initial_channel"] == 16
    assert vocoder.held_out_files == () and vocoder.started_from == "scratch"


# ---------------------------------------------------------------------------------------------
# Hostile values


def test_values_of_the_wrong_kind_read_as_none(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "m.distillgan", vocoder={})
    set_attrs(
        path,
        "vocoder",
        {
            "status": "trusted",
            "epochs_completed": "5",  # a count as text
            "steps": True,  # a bool is no count
            "total_epochs": -3,
            "best_epoch": 2.5,
            "val_mel_l1_best": False,  # a bool is no number
            "val_mel_l1_last": "0.3",
            "val_mel_l1_history": [0.5, "x"],
            "val_network_mel_l1_best": "1.2",
            "val_network_mel_l1_history": [None],
            "held_out_files": ["a.wav", 7],
            "type": 5,
            "started_from": ["prior"],
            "config": "{not json",
            "train_config": "[1, 2]",  # JSON, but not an object
        },
    )
    with h5py.File(path, "r+") as f:
        f["vae"].attrs["summary"] = json.dumps("[" * 100_000 + "]" * 100_000)  # too deep to decode
    reader = open_model(path)
    record = vocoder_record(reader)
    forged = [
        "status",
        "epochs_completed",
        "steps",
        "total_epochs",
        "best_epoch",
        "val_mel_l1_best",
        "val_mel_l1_last",
        "val_mel_l1_history",
        "val_network_mel_l1_best",
        "val_network_mel_l1_history",
        "held_out_files",
        "type",
        "started_from",
        "config",
        "train_config",
    ]
    assert {key: getattr(record, key) for key in forged} == dict.fromkeys(forged)
    assert record.warmup_steps is not None and record.trained_at is not None  # the untouched ones
    vae = vae_record(reader)
    assert (vae.status, vae.epochs_completed, vae.steps, vae.val_recon_last) == (None, None, None, None)
    assert vae.config is not None  # the config beside the broken summary is still read
    # the code that uses them says what is wrong, in one line
    with pytest.raises(ModelFileError, match="is of type None"):
        read_vocoder_info(path)
    state = read_model_state(path)
    assert state.error is None and not state.vae_complete and not state.vocoder_complete


def test_manifest_and_discriminator_width_of_the_wrong_kind_read_as_none(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.distillgan",
        {"dataset": Section(attrs={"manifest": "not json"}), DISCRIMINATORS: Section(attrs={})},
    )
    set_attrs(path, DISCRIMINATORS, {"discriminator_channel_divisor": "8"})
    reader = open_model(path)
    assert dataset_record(reader).manifest is None
    assert discriminators_record(reader).discriminator_channel_divisor is None
    assert read_model_state(path).manifest is None


# ---------------------------------------------------------------------------------------------
# Schema 1


def test_a_schema_1_file_reads_its_epochs_as_epochs_completed(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "old.distillgan", vocoder={"epochs": 12, "total_epochs": 40})
    make_schema_1(path)
    reader = open_model(path)
    assert file_record(reader).schema_version == 1
    assert vocoder_record(reader).epochs_completed == 12
    assert reader.attrs("vocoder")["epochs_completed"] == 12  # the reader's own names, for every caller
    info = read_vocoder_info(path)
    assert info is not None and info.epochs_completed == 12
    # the name is read by the file's schema: in a file of this schema, "epochs" means nothing
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
    assert vocoder_record(open_model(path)).epochs_completed is None


def test_rewriting_a_schema_1_file_renames_the_stages_it_copies(tmp_path: Path) -> None:
    """A rewrite (another stage trained, the training state dropped) is of this schema: the
    vocoder stage it copies unchanged takes this schema's names, or its count would be lost."""
    path = write_model_file(tmp_path / "old.distillgan", vocoder={"epochs": 12})
    make_schema_1(path)
    write(path, {"dataset": Section(attrs=DatasetRecord({"root": "/audio", "files": []}).to_attrs())})
    reader = open_model(path)
    assert file_record(reader).schema_version == SCHEMA_VERSION
    assert vocoder_record(reader).epochs_completed == 12
    with h5py.File(path, "r") as f:
        assert "epochs" not in f["vocoder"].attrs and json.loads(f["vocoder"].attrs["epochs_completed"]) == 12


def test_a_newer_schema_is_still_refused(tmp_path: Path) -> None:
    path = write_model_file(tmp_path / "new.distillgan")
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ModelFileError, match=rf"newer distillgan \(schema {SCHEMA_VERSION + 1}\)"):
        open_model(path)


def test_the_shipped_prior_reads_whatever_schema_it_was_exported_with() -> None:
    record = vocoder_record(open_model(PRIOR_PATH))
    assert record.status == "complete" and record.epochs_completed is not None
    assert record.best_epoch is not None and record.best_epoch <= record.epochs_completed


def test_export_copies_a_schema_1_run_as_a_finished_prior(tmp_path: Path) -> None:
    run = write_model_file(
        tmp_path / "run.distillgan",
        vocoder={"status": "partial", "epochs": 9, "total_epochs": 500},
        vae=False,
    )
    width = TINY_HIFIGAN.discriminator_channel_divisor
    state = {f"discriminators.{k}": v for k, v in Discriminators(TINY_HIFIGAN).state_dict().items()}
    write(run, {"vocoder_checkpoint": pack_tree({"state_dict": state})}, create=False)
    make_schema_1(run)
    before = vocoder_record(open_model(run))
    out = export(run, tmp_path / "prior.h5")
    reader = open_model(out)
    prior = vocoder_record(reader)
    assert (prior.status, prior.started_from, prior.epochs_completed, prior.total_epochs) == (
        "complete",
        "scratch",
        9,
        500,
    )
    assert dataclasses.replace(prior, status="partial", started_from="scratch") == before
    assert file_record(reader).schema_version == SCHEMA_VERSION
    assert discriminators_record(reader).discriminator_channel_divisor == width
    start = read_starting_weights(out, "prior")
    assert start.discriminator_divisor == width and start.discriminators is not None
    assert all(torch.equal(start.discriminators[k[len("discriminators.") :]], v) for k, v in state.items())
