"""`distillgan model list|info|rename|delete|compact`."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from distillgan.cli.common import ask_yes, console_for, models_dir_option
from distillgan.config import json_attr
from distillgan.errors import DistillganError


def _fmt_time(value: Any) -> str:
    if not value:
        return "–"
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


def _fmt_metric(value: float | None) -> str:
    """A stored metric (None: not recorded, or unreadable): 4 significant digits, else "?"."""
    return "?" if value is None else f"{value:.4g}"


def _known(value: Any) -> Any:
    """A stored value, "?" when the file does not record one that can be read."""
    return "?" if value is None else value


def _fmt_size(num: int) -> str:
    """A size as the model library says it everywhere (``12.3 MB``)."""
    from distillgan.library import size_text

    return size_text(num)


def stage_summary(reader: Any) -> str:
    """E.g. ``vae (complete, 400 of 400 epochs done), vocoder (partial, 6 of 400 epochs done,
    resumable)``: each stage's status and completed epochs, the one way every front end counts."""
    from distillgan.modelfile import vae_record, vocoder_record
    from distillgan.progress import epochs_done

    sections = set(reader.sections())
    parts = []
    for stage, read in (("vae", vae_record), ("vocoder", vocoder_record)):
        if stage not in sections:
            continue
        record = read(reader)
        text = f"{_known(record.status)}, {epochs_done(record.epochs_completed, record.total_epochs)}"
        if f"{stage}_checkpoint" in sections:
            text += ", resumable"
        parts.append(f"{stage} ({text})")
    return ", ".join(parts) or "empty"


@click.command("list")
@models_dir_option
def model_list(models_dir: Path | None) -> None:
    """Models in the models folder: name, stages, size, dates."""
    from rich.markup import escape
    from rich.table import Table

    from distillgan.errors import ModelFileError
    from distillgan.modelfile import default_models_dir, file_record, list_models, open_model

    console = console_for()
    folder = default_models_dir(models_dir)
    paths = list_models(folder)
    if not paths:
        console.print(
            escape(f"No models in {folder} yet. Create one: distillgan train vae ./my_sounds --name NAME")
        )
        return
    table = Table(title=escape(f"Models in {folder}"))
    for col in ("name", "stages", "size", "of which training state", "created", "updated"):
        table.add_column(col)
    for path in paths:
        try:
            reader = open_model(path)
            file = file_record(reader)
            table.add_row(
                escape(path.stem),
                escape(stage_summary(reader)),
                _fmt_size(reader.size_bytes()),
                _fmt_size(_training_state_bytes(path)),
                escape(_fmt_time(file.created)),
                escape(_fmt_time(file.updated)),
            )
        except ModelFileError as exc:
            table.add_row(
                escape(path.stem),
                f"[red]unreadable: {escape(str(exc))}[/red]",
                _fmt_size(path.stat().st_size),
                "–",
                "–",
                "–",
            )
    console.print(table)
    if any(_training_state_bytes(path) for path in paths):
        console.print(
            "Training state lets a stopped run resume; `distillgan model compact NAME` drops it "
            "(the trained weights stay).",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _training_state_bytes(path: Path) -> int:
    from distillgan.library import TRAINING_STATE, storage

    try:
        return sum(size for what, size in storage(path) if what in TRAINING_STATE)
    except DistillganError:
        return 0


@click.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON.")
@models_dir_option
def model_info(name: str, as_json: bool, models_dir: Path | None) -> None:
    """Corpus summary, VAE config and training summary, vocoder status."""
    from rich.markup import escape

    from distillgan.generation import vocoder_status
    from distillgan.library import TRAINING_STATE, storage, storage_text
    from distillgan.modelfile import (
        dataset_record,
        file_record,
        open_model,
        resolve_model,
        vae_record,
        vocoder_record,
    )
    from distillgan.progress import epochs_done, kept_epoch

    path = resolve_model(name, models_dir)
    reader = open_model(path)
    file = file_record(reader)
    info: dict[str, Any] = {
        "name": path.stem,
        "path": str(path),
        "size_bytes": reader.size_bytes(),
        "created": file.created,
        "updated": file.updated,
        "app_version": file.app_version,
        "stages": stage_summary(reader),
        "storage": dict(storage(path)),
    }
    if reader.has("dataset"):
        # the file is untrusted: every field may be missing or of any type
        manifest = dataset_record(reader).manifest or {}
        files = (
            [f for f in manifest.get("files", []) if isinstance(f, dict)]
            if isinstance(manifest.get("files"), list)
            else []
        )
        durations = [f.get("duration_s") for f in files]
        info["corpus"] = {
            "root": manifest.get("root"),
            "files": len(files),
            "duration_s": round(
                sum(d for d in durations if isinstance(d, (int, float)) and math.isfinite(d)), 2
            ),
        }
    vae = vae_record(reader) if reader.has("vae") else None
    if vae is not None:
        info["vae"] = {"config": vae.config or {}, "summary": vae.summary()}
    vocoder = vocoder_record(reader) if reader.has("vocoder") else None
    if vocoder is not None:
        info["vocoder"] = dataclasses.asdict(vocoder)
    if reader.has("vocoder_checkpoint"):
        info["vocoder_checkpoint"] = True
    try:
        status = vocoder_status(path)
        info["auto_vocoder"] = {"choice": status.auto_choice, "reason": status.auto_reason}
    except DistillganError as error:
        info["auto_vocoder"] = {"choice": "bigvgan", "reason": str(error)}
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    console = console_for()
    # text from the file goes through escape(): Rich would read "[...]" in it as markup
    console.print(
        f"[bold]{escape(info['name'])}[/bold]  {escape(info['path'])}  ({_fmt_size(info['size_bytes'])})"
    )
    console.print(
        escape(
            f"stages: {info['stages']}   created {_fmt_time(info['created'])}, updated {_fmt_time(info['updated'])}"
        )
    )
    space = f"space: {storage_text(list(info['storage'].items()))}"
    if any(info["storage"].get(what) for what in TRAINING_STATE):
        space += f" (`distillgan model compact {info['name']}` drops the training state)"
    console.print(escape(space))
    if "corpus" in info:
        c = info["corpus"]
        console.print(escape(f"corpus: {c['files']} files, {c['duration_s']:.1f} s, from {c['root']}"))
    if vae is not None:
        m = json_attr((vae.config or {}).get("model"))
        console.print(
            escape(
                f"vae: {_known(vae.status)}, {epochs_done(vae.epochs_completed, vae.total_epochs)}, "
                f"{_known(vae.steps)} steps, held-out reconstruction {_fmt_metric(vae.val_recon_first)} → {_fmt_metric(vae.val_recon_last)} "
                f"(latent {m.get('latent_dim')}, channels {m.get('channels')})"
            )
        )
    if vocoder is not None:
        v = vocoder
        console.print(
            escape(
                f"vocoder: {_known(v.type)} {_known(v.status)}, {epochs_done(v.epochs_completed, v.total_epochs)}, "
                f"{_known(v.steps)} steps, held-out mel error last {_fmt_metric(v.val_mel_l1_last)}"
            )
        )
        held = v.held_out_files
        console.print(
            escape(
                f"  started from {v.started_from or 'scratch'}; "
                f"{kept_epoch(v)}; "
                + (
                    f"held out: {', '.join(held)}"
                    if held
                    else "held-out clips come from the training files (too few files to hold whole ones out)"
                )
            )
        )
    else:
        console.print(escape("vocoder: none yet (train one: distillgan train vocoder " + info["name"] + ")"))
    auto = info["auto_vocoder"]
    console.print(escape(f"auto vocoder: {auto['choice']} — {auto['reason']}"))


@click.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Delete without asking.")
@models_dir_option
def model_delete(name: str, yes: bool, models_dir: Path | None) -> None:
    """Delete model NAME: its file and its run folder (TensorBoard logs, previews).

    Asks first (--yes answers it); a model in use (training anywhere) is refused.
    """
    from distillgan.library import delete_model
    from distillgan.modelfile import resolve_model

    path = resolve_model(name, models_dir)
    delete_model(
        path,
        confirm=None
        if yes
        else lambda what: ask_yes(
            f"Delete {what}? This cannot be undone.",
            "nothing was deleted: pass --yes to confirm without a terminal",
        ),
    )
    click.echo(f"Deleted model '{path.stem}'.")


@click.command("rename")
@click.argument("old")
@click.argument("new")
@click.option("--yes", is_flag=True, help="Rename without asking.")
@models_dir_option
def model_rename(old: str, new: str, yes: bool, models_dir: Path | None) -> None:
    """Rename model OLD to NEW, its run folder (TensorBoard logs, previews) with it.

    Asks first (--yes answers it); a model in use (training anywhere) is refused.
    """
    from distillgan.library import rename_model
    from distillgan.modelfile import resolve_model

    path = resolve_model(old, models_dir)
    target = rename_model(
        path,
        new,
        confirm=None
        if yes
        else lambda what: ask_yes(
            f"Rename {what}?", "nothing was renamed: pass --yes to confirm without a terminal"
        ),
    )
    click.echo(f"Renamed model '{path.stem}' to '{target.stem}': {target}")


@click.command("compact")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Compact without asking.")
@models_dir_option
def model_compact(name: str, yes: bool, models_dir: Path | None) -> None:
    """Drop model NAME's resumable training state (a stopped run's), keeping its trained weights.

    The model generates as before, but the stopped run can no longer be resumed or extended.
    Asks first (--yes answers it); a model in use (training anywhere) is refused.
    """
    from distillgan.library import compact_model
    from distillgan.modelfile import resolve_model

    path = resolve_model(name, models_dir)
    freed = compact_model(
        path,
        confirm=None
        if yes
        else lambda what: ask_yes(
            f"Compact {what}?", "nothing was dropped: pass --yes to confirm without a terminal"
        ),
    )
    click.echo(
        f"Compacted model '{path.stem}': {_fmt_size(freed)} freed, {_fmt_size(path.stat().st_size)} now."
    )
