"""`distillgan train vae|vocoder`: configure a Trainer run and show its progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from distillgan.cli.common import (
    Launch,
    ask_choice,
    ask_yes,
    build_trainer_options,
    console_for,
    load_corpus_verbose,
    models_dir_option,
    print_run_end,
    trainer_options,
)
from distillgan.config import json_attr
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
    from distillgan.modelfile import ModelLock, new_model_path, open_model
    from distillgan.progress import CancelToken
    from distillgan.training import resume_epoch, train_vae

    launch = Launch.current(num_nodes)
    console, err = console_for(), console_for(stderr=True)
    console.quiet = err.quiet = not launch.rank_zero  # the other ranks train silently; rank zero reports
    overrides: dict[str, Any] = {"train": {}}
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            overrides["train"][key] = value
    if precision is not None:
        overrides["train"]["precision"] = precision
    cfg = load_vae_config(config_file, overrides)
    model_name = name or Path(corpus).resolve().name
    model_path = new_model_path(model_name, models_dir)
    try:
        model_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DistillganError(
            f"cannot create the models folder {model_path.parent} ({exc.strerror})"
        ) from exc
    lock = ModelLock(model_path, owner="distillgan train vae").acquire() if launch.rank_zero else None
    try:
        resume = False
        with launch.agreed():
            if model_path.exists():
                reader = open_model(model_path)
                if reader.has("vae_checkpoint") and not overwrite:
                    epoch = resume_epoch(
                        json_attr(reader.attrs("vae").get("summary")).get("epochs_completed")
                    )
                    resume_flag = resume_flag or launch.decision
                    if resume_flag is None:
                        resume_flag = ask_choice(
                            f"Model '{model_path.stem}' has an unfinished VAE run. Resume from epoch {epoch} or start fresh?",
                            ["resume", "fresh"],
                            "an unfinished VAE run exists: pass --resume or --fresh",
                            may_ask=launch.may_ask,
                        )
                    resume = resume_flag == "resume"
                if not resume and not overwrite:
                    raise DistillganError(
                        f"model '{model_path.stem}' already exists at {model_path}: choose another --name or pass --overwrite"
                    )
                if resume:
                    stored = json_attr(reader.attrs("vae").get("config"))  # untrusted: validated below
                    if not stored:
                        raise DistillganError(
                            f"model '{model_path.stem}' has no usable stored VAE config to resume with: "
                            "start over with --fresh"
                        )
                    cfg = load_vae_config(None, stored)
        corpus_data = load_corpus_verbose(corpus, console, err)
        # --overwrite: the run's first save replaces the model (kept whole until then)
        token = CancelToken()
        options = build_trainer_options(
            accelerator, precision, devices, num_nodes, strategy, cfg.train.accelerator
        )
        console.print(f"Training VAE for model '{model_path.stem}' — Ctrl+C saves and stops")
        with (
            TrainingDisplay(console, "vae") as display,
            cancel_on_ctrl_c(token, console),
            launch.passed_on(resume),
        ):
            result = train_vae(
                corpus_data,
                model_path,
                cfg,
                lock=lock,
                listener=display if launch.rank_zero else None,
                cancel=token,
                options=options,
                resume=resume,
            )
        print_run_end(console, result, "VAE")
        if result.status != "complete":
            raise SystemExit(130)
    finally:
        if lock is not None:
            lock.release()


VOCODER_RECIPES = ["vocoder", "vocoder_quick", "vocoder_tiny"]


def _resume_decision(
    name: str, flag: str | None, has_checkpoint: bool, vocoder: dict[str, Any], yes: bool, launch: Launch
) -> bool:
    """Resume or start fresh, and whether replacing a finished vocoder is allowed; asks when unsure
    and allowed to (see :class:`Launch`)."""
    from distillgan.training import resume_epoch

    if launch.decision is not None:
        return launch.decision == "resume"  # rank zero decided, and was allowed to replace
    if flag == "resume" and not has_checkpoint:
        raise DistillganError(f"model '{name}' has no vocoder training state to resume: run without --resume")
    if has_checkpoint and flag is None:
        flag = ask_choice(
            f"Resume from epoch {resume_epoch(vocoder.get('epochs'))} or start fresh?",
            ["resume", "fresh"],
            "a saved vocoder training state exists: pass --resume or --fresh",
            may_ask=launch.may_ask,
        )
    resume = has_checkpoint and flag == "resume"
    if vocoder.get("status") == "complete" and not resume and not yes:
        replace = ask_yes(
            "This model already has a trained vocoder. Replace it?",
            "this model already has a trained vocoder: pass --yes to replace it",
            may_ask=launch.may_ask,
        )
        if not replace:
            raise DistillganError("kept the existing vocoder; nothing changed")
    return resume


@click.command("vocoder")
@click.argument("model_name", metavar="MODEL")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Total epochs (default: the recipe's; with --resume, extends the run).",
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
@click.option(
    "--init",
    default=None,
    metavar="prior|scratch|MODEL",
    help="Where the generator starts: the shipped universal prior (the recipe's default), "
    "scratch, or another model's vocoder.",
)
@click.option(
    "--bigvgan-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with BigVGAN-v2's files, to score it on the held-out clips at the end "
    "(default: $DISTILLGAN_BIGVGAN_DIR, else the Hugging Face cache; never downloads).",
)
@click.option("--yes", is_flag=True, help="Answer yes to replacing an existing trained vocoder.")
@click.option(
    "--recipe",
    type=click.Choice(VOCODER_RECIPES),
    default="vocoder",
    show_default=True,
    help="Built-in recipe: full V2 quality, quick (CPU, minutes) or tiny (smoke test).",
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
    init: str | None,
    bigvgan_dir: Path | None,
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
    """Train the model's own HiFi-GAN V2 vocoder on its corpus.

    Ctrl+C saves the training state into the model file and stops (exit status 130);
    run the command again to resume. Without a terminal, pass --resume/--fresh and --yes
    instead of answering questions.
    """
    from rich.markup import escape

    from distillgan.cli.display import TrainingDisplay, cancel_on_ctrl_c
    from distillgan.generation import load_vae
    from distillgan.lightning_modules.hifigan import load_vocoder_config
    from distillgan.modelfile import ModelLock, open_model, resolve_model
    from distillgan.progress import CancelToken
    from distillgan.training import (
        check_model_corpus,
        load_model_corpus,
        resumed_vocoder_run,
        run_dir,
        train_vocoder,
    )

    launch = Launch.current(num_nodes)
    console, err = console_for(), console_for(stderr=True)
    console.quiet = err.quiet = not launch.rank_zero  # the other ranks train silently; rank zero reports
    path = resolve_model(model_name, models_dir)
    reader = open_model(path)
    if not reader.has("vae"):
        raise DistillganError(f"model '{path.stem}' has no trained VAE yet: run `distillgan train vae` first")
    if not reader.has("dataset"):
        raise DistillganError(f"model '{path.stem}' has no corpus manifest: retrain its VAE")
    load_vae(path)  # a damaged or hostile VAE is refused now, not after hours of vocoder training
    lock = ModelLock(path, owner="distillgan train vocoder").acquire() if launch.rank_zero else None
    try:
        reader = open_model(path)  # re-read under the lock
        vocoder = reader.attrs("vocoder") if reader.has("vocoder") else {}
        manifest = json_attr(reader.attrs("dataset").get("manifest"))
        check = check_model_corpus(manifest, audio_dir=audio_dir, accept_changes=accept_corpus_changes)
        if not check.ok:
            err.print(f"[yellow]warning:[/yellow] training on what is there: {escape(check.describe())}")
        with launch.agreed():
            resume = _resume_decision(
                path.stem, resume_flag, reader.has("vocoder_checkpoint"), vocoder, yes, launch
            )

        overrides: dict[str, Any] = {"train": {}}
        for key, value in (
            ("lr", lr),
            ("batch_size", batch_size),
            ("checkpoint_interval", checkpoint_interval),
            ("preview_interval", preview_interval),
            ("warmup_steps", warmup_steps),
            ("keep_checkpoint", keep_checkpoint),
            ("precision", precision),
            ("init", init),
        ):
            if value is not None:
                overrides["train"][key] = value
        if resume:
            run = resumed_vocoder_run(
                vocoder,
                overrides["train"],
                epochs,
                go_on="pass --epochs N with N above {done} to train on, or --fresh to start over",
            )
            if run.ignored or config_file is not None:
                ignored = ", ".join("--" + k.replace("_", "-") for k in run.ignored)
                err.print(
                    "[yellow]warning:[/yellow] resuming keeps the run's own recipe"
                    + (f" ({ignored} ignored)" if ignored else "")
                )
            cfg, epochs = run.cfg, run.total_epochs
        else:
            cfg = load_vocoder_config(config_file, overrides, recipe=recipe)
        options = build_trainer_options(
            accelerator, precision, devices, num_nodes, strategy, cfg.train.accelerator
        )
        corpus = load_model_corpus(
            manifest,
            audio_dir=audio_dir,
            accept_changes=accept_corpus_changes,
            on_skip=lambda v: err.print(f"[yellow]warning:[/yellow] {escape(v.describe())}"),
        )
        console.print(f"Corpus: {corpus.summary()}")
        verb = "Resuming" if resume else "Training"
        console.print(f"{verb} the HiFi-GAN vocoder of '{path.stem}' — Ctrl+C saves a checkpoint and stops")
        token = CancelToken()
        display = TrainingDisplay(console, "vocoder")
        with display, cancel_on_ctrl_c(token, console), launch.passed_on(resume):
            result = train_vocoder(
                corpus,
                path,
                cfg,
                lock=lock,
                listener=display if launch.rank_zero else None,
                cancel=token,
                options=options,
                resume=resume,
                epochs=epochs,
                bigvgan_dir=bigvgan_dir,
            )
        if result.status == "complete":
            best = result.metrics.get("val/mel_l1")
            console.print(
                f"[green]Vocoder training complete[/green]: {result.epochs_completed} epochs, "
                f"{result.steps} steps" + (f", held-out mel error {best:.3f}" if best is not None else "")
            )
        else:
            console.print(f"[bold]Checkpoint saved at epoch {result.epoch}. Resume anytime.[/bold]")
        console.print(f"Previews: {run_dir(path) / 'previews'}", soft_wrap=True)
        if result.status != "complete":
            raise SystemExit(130)
    finally:
        if lock is not None:
            lock.release()
