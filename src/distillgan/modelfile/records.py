"""Typed records of what a model file holds: one dataclass per stage, one name per fact.

Each record has one reader (``vae_record(reader)``, ...) and one :meth:`to_attrs` that the
writers store, so no other module reads or writes a stage's attributes by their string keys.
A model file is untrusted input: a reader keeps a value only when it has the expected type
(counts: non-negative ints; numbers: int or float, never bool; text: str; lists: every item
checked) and reads anything else as None, so a hand-edited or hostile value never crashes
the code that shows or uses it. Deciding whether a None is acceptable is the caller's job
(e.g. :func:`distillgan.vocoders.hifigan.read_vocoder_info` calls the stage damaged).

Both stages record their training progress with the same names (:class:`StageRecord`).
Schema 1 named the vocoder's completed-epoch count ``epochs``; the reader gives older files'
attributes this schema's names (:data:`~distillgan.modelfile.schema.RENAMED_ATTRS`).

Like the rest of the package it imports no torch: listing and showing models stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from distillgan.config import json_attr, stored_count
from distillgan.modelfile.schema import FORMAT

if TYPE_CHECKING:
    from distillgan.modelfile.reader import ModelReader

Status = Literal["complete", "partial"]

# The stages (top-level groups) the records describe
VAE = "vae"
DATASET = "dataset"
VOCODER = "vocoder"
DISCRIMINATORS = "vocoder_discriminators"  # the prior's discriminators, beside its generator


def _status(value: Any) -> Status | None:
    return value if value in ("complete", "partial") else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: Any) -> dict[str, Any] | None:
    """A JSON object stored as text (or, by hand, as an object); None when it is not one."""
    return json_attr(value) or None


def _numbers(value: Any) -> tuple[float, ...] | None:
    if not isinstance(value, (list, tuple)) or any(_number(v) is None for v in value):
        return None
    return tuple(float(v) for v in value)


def _texts(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


def _config_text(config: dict[str, Any] | None) -> str:
    """A config as the file stores it: JSON text, keys sorted (as ``config.to_json`` writes it)."""
    return json.dumps(config, sort_keys=True)


@dataclass(frozen=True)
class StageRecord:
    """Where a stage's training stands, as each save records it (what
    :class:`~distillgan.callbacks.ModelFileCheckpoint` passes to the module that writes it).
    Counts are in the user's units: epochs from 1, steps as the user counts them."""

    status: Status | None = None  # "complete": the run ended; "partial": stopped or mid-run
    epoch: int | None = None  # the epoch (from 1) the saved state belongs to
    epochs_completed: int | None = None
    total_epochs: int | None = None
    steps: int | None = None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def progress(self) -> dict[str, Any]:
        """The progress fields alone (a subclass record is built on them)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(StageRecord)}


def _read_progress(values: dict[str, Any]) -> dict[str, Any]:
    """:class:`StageRecord`'s fields from untrusted stored values."""
    return {
        "status": _status(values.get("status")),
        "epoch": stored_count(values.get("epoch")),
        "epochs_completed": stored_count(values.get("epochs_completed")),
        "total_epochs": stored_count(values.get("total_epochs")),
        "steps": stored_count(values.get("steps")),
    }


@dataclass(frozen=True)
class VAERecord(StageRecord):
    """The ``/vae`` stage: its config and a training summary (progress and held-out
    reconstruction), the summary kept as one JSON attribute as the file format describes it."""

    config: dict[str, Any] | None = None  # the VAEConfig as a mapping (validated when loaded)
    val_recon_first: float | None = None
    val_recon_last: float | None = None
    val_recon_best: float | None = None

    def summary(self) -> dict[str, Any]:
        """The training summary, as stored (and as ``model info --json`` shows it)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "config"}

    def to_attrs(self) -> dict[str, Any]:
        return {"config": _config_text(self.config), "summary": json.dumps(self.summary())}


def vae_record(reader: ModelReader) -> VAERecord:
    """The model's VAE stage (a clear ModelFileError when it has none)."""
    attrs = reader.attrs(VAE)
    summary = _object(attrs.get("summary")) or {}
    return VAERecord(
        **_read_progress(summary),
        config=_object(attrs.get("config")),
        val_recon_first=_number(summary.get("val_recon_first")),
        val_recon_last=_number(summary.get("val_recon_last")),
        val_recon_best=_number(summary.get("val_recon_best")),
    )


@dataclass(frozen=True)
class VocoderRecord(StageRecord):
    """The ``/vocoder`` stage's summary: what the kept generator is and how it was trained."""

    type: str | None = None  # the vocoder kind, "hifigan_v2"
    config: dict[str, Any] | None = None  # the generator's HiFiGANConfig as a mapping
    train_config: dict[str, Any] | None = None  # the run's VocoderTrainConfig as a mapping
    warmup_steps: int | None = None
    val_mel_l1_best: float | None = None  # held-out mel error of the kept epoch ...
    val_mel_l1_last: float | None = None  # ... and of the last one
    val_mel_l1_history: tuple[float, ...] | None = None  # per validation, the latest 1000
    # the network's own held-out mel error (before level matching; it chooses the kept epoch) ...
    val_network_mel_l1_best: float | None = None
    val_network_mel_l1_history: tuple[float, ...] | None = None  # ... and per validation
    best_epoch: int | None = None  # the epoch whose generator is kept (0: the start's, or none validated)
    # the starting generator's figures, scored before the first step (None: a random start)
    start_mel_l1: float | None = None
    start_network_mel_l1: float | None = None
    bigvgan_val_mel_l1: float | None = None  # BigVGAN-v2 on the same held-out clips, when scored
    # "level-matched": the held-out figures score renders as vocoding gives them (vocoders/
    # mel_match.py); None: written before level matching, they score the network alone
    held_out_render: str | None = None
    held_out_files: tuple[str, ...] | None = None  # empty: clips were cut from training files
    started_from: str | None = None  # "prior", "scratch" or "model NAME"
    nonfinite_skipped: int | None = None  # steps skipped for non-finite losses
    grad_scaler_skipped: int | None = None  # steps the GradScaler skipped (16-mixed)
    trained_at: str | None = None  # ISO 8601, UTC

    def to_attrs(self) -> dict[str, Any]:
        # lists as JSON stores them, so what is written equals what is read back raw
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        attrs["config"] = _config_text(self.config)
        attrs["train_config"] = _config_text(self.train_config)
        return attrs


def vocoder_record(reader: ModelReader) -> VocoderRecord:
    """The model's vocoder stage (a clear ModelFileError when it has none)."""
    attrs = reader.attrs(VOCODER)
    return VocoderRecord(
        **_read_progress(attrs),
        type=_text(attrs.get("type")),
        config=_object(attrs.get("config")),
        train_config=_object(attrs.get("train_config")),
        warmup_steps=stored_count(attrs.get("warmup_steps")),
        val_mel_l1_best=_number(attrs.get("val_mel_l1_best")),
        val_mel_l1_last=_number(attrs.get("val_mel_l1_last")),
        val_mel_l1_history=_numbers(attrs.get("val_mel_l1_history")),
        val_network_mel_l1_best=_number(attrs.get("val_network_mel_l1_best")),
        val_network_mel_l1_history=_numbers(attrs.get("val_network_mel_l1_history")),
        best_epoch=stored_count(attrs.get("best_epoch")),
        start_mel_l1=_number(attrs.get("start_mel_l1")),
        start_network_mel_l1=_number(attrs.get("start_network_mel_l1")),
        bigvgan_val_mel_l1=_number(attrs.get("bigvgan_val_mel_l1")),
        held_out_render=_text(attrs.get("held_out_render")),
        held_out_files=_texts(attrs.get("held_out_files")),
        started_from=_text(attrs.get("started_from")),
        nonfinite_skipped=stored_count(attrs.get("nonfinite_skipped")),
        grad_scaler_skipped=stored_count(attrs.get("grad_scaler_skipped")),
        trained_at=_text(attrs.get("trained_at")),
    )


@dataclass(frozen=True)
class DatasetRecord:
    """The ``/dataset`` stage: the corpus manifest (root folder and per-file facts; its files
    are checked where they are used, by :func:`distillgan.corpus.check_manifest`)."""

    manifest: dict[str, Any] | None = None

    def to_attrs(self) -> dict[str, Any]:
        return {"manifest": self.manifest}


def dataset_record(reader: ModelReader) -> DatasetRecord:
    """The model's corpus manifest (a clear ModelFileError when it has no dataset stage)."""
    return DatasetRecord(_object(reader.attrs(DATASET).get("manifest")))


@dataclass(frozen=True)
class DiscriminatorsRecord:
    """The prior's ``/vocoder_discriminators`` stage: the width they were trained at (the
    generator config's ``discriminator_channel_divisor``)."""

    discriminator_channel_divisor: int | None = None

    def to_attrs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def discriminators_record(reader: ModelReader) -> DiscriminatorsRecord:
    """The prior's discriminator width (a clear ModelFileError when the file keeps none)."""
    return DiscriminatorsRecord(
        stored_count(reader.attrs(DISCRIMINATORS).get("discriminator_channel_divisor"))
    )


@dataclass(frozen=True)
class FileRecord:
    """The file's own facts, in its root attributes (beside the format mark)."""

    schema_version: int
    app_version: str | None = None  # the distillgan that wrote it last
    created: str | None = None  # ISO 8601, UTC
    updated: str | None = None

    def to_attrs(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}


def file_record(reader: ModelReader) -> FileRecord:
    """The root facts :func:`~distillgan.modelfile.open_model` checked when it opened the file."""
    header = reader.root_attrs
    return FileRecord(
        header["schema_version"],
        _text(header.get("app_version")),
        _text(header.get("created")),
        _text(header.get("updated")),
    )
