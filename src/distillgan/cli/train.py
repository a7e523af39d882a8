"""`distillgan train vae|vocoder`: configure a Trainer run and show its progress."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from distillgan.cli.common import (
    Launch,
    SettingType,
    ask_choice,
    ask_yes,
    build_trainer_options,
    console_for,
    load_corpus_verbose,
    models_dir_option,
    print_run_end,
    trainer_options,
)
from distillgan.errors import DistillganError
from distillgan.progress import checkpoint_saved, kept_epoch
from distillgan.runs import (
    VOCODER_RECIPES,
    Plan,
    Terms,
    TrainRequest,
    lock_model,
    plan_run,
    read_model_state,
)

if TYPE_CHECKING:
    from distillgan.training import TrainerOptions


@click.command("vae")
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Model name (default: the corpus folder's name).")
@click.option(
    "--epochs", type=SettingType("epochs"), default=None, help="Epochs (default adapts to corpus size)."
)
@click.option("--batch-size", type=SettingType("batch_size"), default=None)
@click.option("--lr", type=SettingType("lr"), default=None, help="Learning rate.")
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
    from distillgan.modelfile import new_model_path

    request = TrainRequest(
        stage="vae",
        model_path=new_model_path(name or Path(corpus).resolve().name, models_dir),
        corpus_dir=Path(corpus),
        train=_given(batch_size=batch_size, lr=lr, precision=precision, accelerator=accelerator),
        epochs=epochs,
        recipe_file=config_file,
        # --overwrite: start over and replace the model (its first save does, kept whole until then)
        resume=False if overwrite else {"resume": True, "fresh": False}.get(resume_flag or ""),
        replace=overwrite,
    )
    run_training(request, build_trainer_options(devices, num_nodes, strategy))


# what to pass instead, when a question cannot be asked
REFUSALS = {
    ("vae", "resume"): "an unfinished VAE run exists: pass --resume or --fresh",
    ("vae", "replace"): "model '{name}' already exists at {path}: choose another --name or pass --overwrite",
    ("vocoder", "resume"): "a saved vocoder training state exists: pass --resume or --fresh",
    ("vocoder", "replace"): "this model already has a trained vocoder: pass --yes to replace it",
}


def run_training(request: TrainRequest, options: TrainerOptions | None = None) -> None:
    """Plan ``request`` (asking its questions), show its length and estimate, train it with a live
    display; Ctrl+C saves and exits 130. What `train vae`, `train vocoder` and the demo run.

    ``options``: devices, nodes and strategy (default: Lightning's own ``auto``); the accelerator
    and precision are the recipe's, overridden in ``request.train``."""
    from rich.markup import escape

    from distillgan.cli.display import TrainingDisplay, cancel_on_ctrl_c
    from distillgan.corpus import check_model_corpus, load_model_corpus
    from distillgan.modelfile import open_model
    from distillgan.progress import CancelToken
    from distillgan.training import TrainerOptions, run_dir, run_plan

    options = options or TrainerOptions()
    launch = Launch.current(options.num_nodes)
    console, err = console_for(), console_for(stderr=True)
    console.quiet = err.quiet = not launch.rank_zero  # the other ranks train silently; rank zero reports
    path, vocoder = request.model_path, request.stage == "vocoder"
    if vocoder:
        open_model(path)  # not a model file: refused before a lock file is left beside it
    lock = lock_model(path, f"distillgan train {request.stage}") if launch.rank_zero else None
    try:
        with launch.agreed():
            plan = _decide(request, launch)
        if vocoder:
            from distillgan.generation import load_vae

            load_vae(path)  # a damaged or hostile VAE is refused now, not after hours of vocoder training
            manifest = read_model_state(path).manifest or {}
            check = check_model_corpus(
                manifest, audio_dir=request.audio_dir, accept_changes=request.accept_corpus_changes
            )
            if not check.ok:
                err.print(f"[yellow]warning:[/yellow] training on what is there: {escape(check.describe())}")
        note = plan.note(_flag)
        if note:
            err.print(f"[yellow]warning:[/yellow] {note}")
        if vocoder:
            corpus = load_model_corpus(
                manifest,
                audio_dir=request.audio_dir,
                accept_changes=request.accept_corpus_changes,
                on_skip=lambda v: err.print(f"[yellow]warning:[/yellow] {escape(v.describe())}"),
            )
            console.print(f"Corpus: {corpus.summary()}")
        else:
            assert request.corpus_dir is not None
            corpus = load_corpus_verbose(request.corpus_dir, console, err)
        if launch.may_ask:  # one process: a short measured fit on one device is safe here
            from distillgan.runs import NO_ESTIMATE, estimate

            length = estimate(plan, corpus, options)
            if length is None:
                err.print(f"[yellow]warning:[/yellow] {NO_ESTIMATE}")
            else:
                console.print(escape(length.text()), soft_wrap=True)
        if vocoder:
            verb = "Resuming" if plan.resume else "Training"
            console.print(
                f"{verb} the HiFi-GAN vocoder of '{path.stem}' — Ctrl+C saves a checkpoint and stops"
            )
        else:
            console.print(f"Training VAE for model '{path.stem}' — Ctrl+C saves and stops")
        token = CancelToken()
        with (
            TrainingDisplay(console, request.stage) as display,
            cancel_on_ctrl_c(token, console),
            launch.passed_on(plan.resume),
        ):
            result = run_plan(
                plan,
                corpus,
                lock=lock,
                listener=display if launch.rank_zero else None,
                cancel=token,
                options=options,
            )
        if not vocoder:
            print_run_end(console, result, "VAE")
        elif result.status == "complete":
            kept = read_model_state(path).vocoder
            console.print(
                f"[green]Vocoder training complete[/green]: {result.epochs_completed} epochs, {result.steps} steps"
                + (f", {kept_epoch(kept)}" if kept else "")
            )
        else:
            console.print(f"[bold]{checkpoint_saved(result.epochs_completed)}[/bold]")
        if vocoder:
            console.print(f"Previews: {run_dir(path) / 'previews'}", soft_wrap=True)
        if result.status != "complete":
            raise SystemExit(130)
    finally:
        if lock is not None:
            lock.release()


CLI_TERMS = Terms(
    go_on="pass --epochs N with N above {done} to train on, or --fresh to start over",
    no_resume="run without --resume",
    start_over="start over with --fresh",
    train_vae_first="train its VAE to the end with `distillgan train vae` first",
)


def _given(**values: Any) -> dict[str, Any]:
    """The options the user gave (None: not given, the recipe decides)."""
    return {key: value for key, value in values.items() if value is not None}


def _flag(key: str) -> str:
    return "--config" if key == "recipe_file" else "--" + key.replace("_", "-")


def _decide(request: TrainRequest, launch: Launch) -> Plan:
    """The run plan for ``request``, asking the user the plan's questions when allowed to (see
    :class:`Launch`), else refusing with what to pass instead."""
    path = request.model_path
    refusals = {
        kind: REFUSALS[request.stage, kind].format(name=path.stem, path=path)
        for kind in ("resume", "replace")
    }
    if launch.decision is not None:  # rank zero decided, and was allowed to replace
        request = dataclasses.replace(request, resume=launch.decision == "resume", replace=True)
    state = read_model_state(request.model_path)
    while True:
        outcome = plan_run(request, state, CLI_TERMS)
        if isinstance(outcome, Plan):
            return outcome
        if outcome.kind == "resume":
            choice = ask_choice(outcome.text, ["resume", "fresh"], refusals["resume"], may_ask=launch.may_ask)
        elif ask_yes(outcome.text, refusals["replace"], may_ask=launch.may_ask):
            choice = "replace"
        else:
            raise DistillganError(outcome.kept)
        request = request.answer(choice)


@click.command("vocoder")
@click.argument("model_name", metavar="MODEL")
@click.option(
    "--epochs",
    type=SettingType("epochs"),
    default=None,
    help="Total epochs (default: the recipe's; with --resume, extends the run).",
)
@click.option("--lr", type=SettingType("lr"), default=None, help="Generator learning rate.")
@click.option("--batch-size", type=SettingType("batch_size"), default=None)
@click.option(
    "--checkpoint-interval",
    type=SettingType("checkpoint_interval"),
    default=None,
    help="Save the training state every N epochs.",
)
@click.option(
    "--preview-interval",
    type=SettingType("preview_interval"),
    default=None,
    help="Write audio previews every N epochs.",
)
@click.option(
    "--warmup-steps",
    type=SettingType("warmup_steps"),
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
    from distillgan.modelfile import resolve_model

    request = TrainRequest(
        stage="vocoder",
        model_path=resolve_model(model_name, models_dir),
        train=_given(
            lr=lr,
            batch_size=batch_size,
            checkpoint_interval=checkpoint_interval,
            preview_interval=preview_interval,
            warmup_steps=warmup_steps,
            keep_checkpoint=keep_checkpoint,
            precision=precision,
            accelerator=accelerator,
            init=init,
        ),
        epochs=epochs,
        recipe=recipe,
        recipe_file=config_file,
        audio_dir=audio_dir,
        accept_corpus_changes=accept_corpus_changes,
        bigvgan_dir=bigvgan_dir,
        resume={"resume": True, "fresh": False}.get(resume_flag or ""),
        replace=yes,
    )
    run_training(request, build_trainer_options(devices, num_nodes, strategy))
