"""`distillgan train vae|vocoder`: configure a Trainer run and show its progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from distillgan.cli.common import (
    ask_choice,
    ask_yes,
    build_trainer_options,
    console_for,
    json_attr,
    load_corpus_verbose,
    models_dir_option,
    print_run_end,
    trainer_options,
)
from distillgan.errors import DistillganError


@click.command("vae")
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Model name (default: the corpus folder's name).")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default adapts to corpus size)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML recipe overriding configs/vae.yaml.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing model of that name (its vocoder too).")
@click.option(
    "--resume", "resume_flag", flag_value="resume", default=None, help="Resume an unfinished VAE run."
)
@click.option(
    "--fresh", "resume_flag", flag_value="fresh", help="Ignore an unfinished VAE run and start over."
)
@trainer_options
@models_dir_option
def train_vae_command(
    corpus: Path,
    name: str | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    config_file: Path | None,
    overwrite: bool,
    resume_flag: str | None,
    accelerator: str | None,
    precision: str | None,
    devices: str,
    num_nodes: int,
    strategy: str,
    models_dir: Path | None,
) -> None:
    """Train the VAE stage on a folder of sounds; writes <models dir>/<name>.distillgan."""
    from distillgan.cli.display import TrainingDisplay, cancel_on_ctrl_c
    from distillgan.config import load_vae_config
    from distillgan.modelfile import ModelLock, open_model, resolve_model
    from distillgan.progress import CancelToken
    from distillgan.training import train_vae

    console, err = console_for(), console_for(stderr=True)
    overrides: dict[str, Any] = {"train": {}}
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            overrides["train"][key] = value
    if precision is not None:
        overrides["train"]["precision"] = precision
    cfg = load_vae_config(config_file, overrides)
    model_name = name or Path(corpus).resolve().name
    model_path = resolve_model(model_name, models_dir, must_exist=False)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    lock = ModelLock(model_path, owner="distillgan train vae").acquire()
    try:
        resume = False
        if model_path.exists():
            reader = open_model(model_path)
            if reader.has("vae_checkpoint") and not overwrite:
                epoch = reader.attrs("vae").get("summary", {})
                epoch = (
                    json.loads(epoch).get("epoch", "?") if isinstance(epoch, str) else epoch.get("epoch", "?")
                )
                if resume_flag is None:
                    resume_flag = ask_choice(
                        f"Model '{model_path.stem}' has an unfinished VAE run. Resume from epoch {epoch} or start fresh?",
                        ["resume", "fresh"],
                        "an unfinished VAE run exists: pass --resume or --fresh",
                    )
                resume = resume_flag == "resume"
            if not resume and not overwrite:
                raise DistillganError(
                    f"model '{model_path.stem}' already exists at {model_path}: choose another --name or pass --overwrite"
                )
            if resume:
                cfg = load_vae_config(None, json.loads(reader.attrs("vae")["config"]))
        corpus_data = load_corpus_verbose(corpus, console, err)
        if overwrite and model_path.exists() and not resume:
            model_path.unlink()
        token = CancelToken()
        options = build_trainer_options(
            accelerator, precision, devices, num_nodes, strategy, cfg.train.accelerator
        )
        console.print(f"Training VAE for model '{model_path.stem}' — Ctrl+C saves and stops")
        with TrainingDisplay(console, "vae") as display, cancel_on_ctrl_c(token, console):
            result = train_vae(
                corpus_data,
                model_path,
                cfg,
                lock=lock,
                listener=display,
                cancel=token,
                options=options,
                resume=resume,
            )
        if result.log_dir:
            console.print(f"TensorBoard: tensorboard --logdir {Path(result.log_dir).parent}")
        print_run_end(console, result, "VAE")
    finally:
        lock.release()


@click.command("vocoder")
@click.argument("model_name", metavar="MODEL")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Total epochs (default adapts to corpus size)."
)
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Generator learning rate."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option(
    "--checkpoint-interval",
    type=click.IntRange(min=1),
    default=None,
    help="Save the training state every N epochs.",
)
@click.option(
    "--preview-interval",
    type=click.IntRange(min=1),
    default=None,
    help="Write audio previews every N epochs.",
)
@click.option(
    "--warmup-steps",
    type=click.IntRange(min=0),
    default=None,
    help="Generator-only reconstruction steps first.",
)
@click.option(
    "--keep-checkpoint",
    is_flag=True,
    default=None,
    help="Keep the full training state at the end, to continue later.",
)
@click.option(
    "--audio-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the corpus is now, if it moved.",
)
@click.option(
    "--accept-corpus-changes", is_flag=True, help="Train even if corpus files are missing or changed."
)
@click.option(
    "--resume", "resume_flag", flag_value="resume", default=None, help="Resume the saved training state."
)
@click.option(
    "--fresh", "resume_flag", flag_value="fresh", help="Start over, discarding the saved training state."
)
@click.option("--yes", is_flag=True, help="Answer yes to replacing an existing trained vocoder.")
@click.option(
    "--recipe",
    type=click.Choice(["vocoder", "vocoder_quick"]),
    default="vocoder",
    show_default=True,
    help="Built-in recipe.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML recipe overriding the built-in one.",
)
@trainer_options
@models_dir_option
def train_vocoder_command(
    model_name: str,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    checkpoint_interval: int | None,
    preview_interval: int | None,
    warmup_steps: int | None,
    keep_checkpoint: bool | None,
    audio_dir: Path | None,
    accept_corpus_changes: bool,
    resume_flag: str | None,
    yes: bool,
    recipe: str,
    config_file: Path | None,
    accelerator: str | None,
    precision: str | None,
    devices: str,
    num_nodes: int,
    strategy: str,
    models_dir: Path | None,
) -> None:
    """Train the model's own HiFi-GAN V2 vocoder on its corpus (Ctrl+C saves; resume later)."""
    import os

    from distillgan.cli.display import TrainingDisplay, cancel_on_ctrl_c
    from distillgan.lightning_modules.hifigan import load_vocoder_config
    from distillgan.modelfile import ModelLock, open_model, resolve_model
    from distillgan.progress import CancelToken
    from distillgan.training import load_model_corpus, train_vocoder

    console, err = console_for(), console_for(stderr=True)
    path = resolve_model(model_name, models_dir)
    reader = open_model(path)
    if not reader.has("vae"):
        raise DistillganError(f"model '{path.stem}' has no trained VAE yet: run `distillgan train vae` first")
    if not reader.has("dataset"):
        raise DistillganError(f"model '{path.stem}' has no corpus manifest: retrain its VAE")
    # DDP re-runs this command in each worker process; the first process decided for all
    worker = os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"
    decided = os.environ.get("DISTILLGAN_RESUME_DECISION")
    lock = None if worker else ModelLock(path, owner="distillgan train vocoder").acquire()
    try:
        reader = open_model(path)  # re-read under the lock
        has_checkpoint = reader.has("vocoder_checkpoint")
        vocoder = reader.attrs("vocoder") if reader.has("vocoder") else {}
        if decided:
            resume_flag = decided
        elif resume_flag == "resume" and not has_checkpoint:
            raise DistillganError(
                f"model '{path.stem}' has no vocoder training state to resume: run without --resume"
            )
        elif has_checkpoint and resume_flag is None:
            resume_flag = ask_choice(
                f"Resume from epoch {vocoder.get('epoch', '?')} or start fresh?",
                ["resume", "fresh"],
                "a saved vocoder training state exists: pass --resume or --fresh",
            )
        resume = has_checkpoint and resume_flag == "resume"
        replacing = vocoder.get("status") == "complete" and not resume and not yes and not decided
        if replacing and not ask_yes(
            "This model already has a trained vocoder. Replace it?",
            "this model already has a trained vocoder: pass --yes to replace it",
        ):
            raise DistillganError("kept the existing vocoder; nothing changed")
        os.environ["DISTILLGAN_RESUME_DECISION"] = "resume" if resume else "fresh"

        overrides: dict[str, Any] = {"train": {}}
        for key, value in (
            ("lr", lr),
            ("batch_size", batch_size),
            ("checkpoint_interval", checkpoint_interval),
            ("preview_interval", preview_interval),
            ("warmup_steps", warmup_steps),
            ("keep_checkpoint", keep_checkpoint),
            ("precision", precision),
        ):
            if value is not None:
                overrides["train"][key] = value
        if resume:
            stored = {
                "generator": json.loads(vocoder["config"]),
                "train": json.loads(vocoder["train_config"]),
            }
            ignored = [k for k in ("lr", "batch_size", "warmup_steps") if k in overrides["train"]]
            if ignored:
                err.print(f"[yellow]warning:[/yellow] resuming keeps the run's own {', '.join(ignored)}")
            for key in ignored:
                overrides["train"].pop(key)
            cfg = load_vocoder_config(
                None, {"generator": stored["generator"], "train": {**stored["train"], **overrides["train"]}}
            )
            epochs = epochs or int(vocoder.get("total_epochs") or 0) or None
        else:
            cfg = load_vocoder_config(config_file, overrides, recipe=recipe)
        manifest = json_attr(reader.attrs("dataset").get("manifest"))
        corpus = load_model_corpus(
            manifest,
            audio_dir=audio_dir,
            accept_changes=accept_corpus_changes,
            on_skip=lambda v: err.print(f"[yellow]warning:[/yellow] {v.describe()}"),
        )
        console.print(f"Corpus: {corpus.summary()}")
        options = build_trainer_options(
            accelerator, precision, devices, num_nodes, strategy, cfg.train.accelerator
        )
        token = CancelToken()
        verb = "Resuming" if resume else "Training"
        console.print(f"{verb} the HiFi-GAN vocoder of '{path.stem}' — Ctrl+C saves a checkpoint and stops")

        def listener(event: Any) -> None:
            if event.kind == "start" and event.path:
                console.print(f"TensorBoard: tensorboard --logdir {event.path}")
            display(event)

        with TrainingDisplay(console, "vocoder") as display, cancel_on_ctrl_c(token, console):
            result = train_vocoder(
                corpus,
                path,
                cfg,
                lock=lock,
                listener=listener,
                cancel=token,
                options=options,
                resume=resume,
                epochs=epochs,
            )
        if not worker:
            if result.status == "complete":
                best = result.metrics.get("val/mel_l1")
                console.print(
                    f"[green]Vocoder training complete[/green]: {result.epochs_completed} epochs, {result.steps} steps"
                    + (f", held-out mel error {best:.3f}" if best is not None else "")
                )
            else:
                console.print(f"[bold]Checkpoint saved at epoch {result.epoch}. Resume anytime.[/bold]")
            console.print(f"Previews: {path.parent / 'runs' / path.stem / 'previews'}")
    finally:
        if lock is not None:
            lock.release()
