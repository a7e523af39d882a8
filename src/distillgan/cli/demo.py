"""`distillgan demo`: the whole product on the built-in example corpus, through the real paths.

The demo plans and runs its two trainings as `train vae` and `train vocoder` do
(:func:`distillgan.cli.train.run_training` on a :class:`~distillgan.runs.TrainRequest`), then
runs `generate`, so what it shows is exactly what a user gets from those commands.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from distillgan.cli.common import SettingType, console_for, models_dir_option
from distillgan.errors import DistillganError
from distillgan.runs import VOCODER_RECIPES

DEMO_CORPUS_FOLDER = "example-corpus"


def _check_demo_owns(model_path: Path, corpus: Path) -> None:
    """Re-running the demo replaces the demo's own model, never a model of the user's."""
    from distillgan.modelfile import dataset_record, open_model

    if not model_path.exists():
        return
    try:
        manifest = dataset_record(open_model(model_path)).manifest or {}
    except DistillganError:
        manifest = {}
    if manifest.get("root") != os.path.abspath(corpus):
        raise DistillganError(
            f"a model named '{model_path.stem}' that the demo did not make exists in {model_path.parent}: "
            "pass --name to give the demo another name"
        )


@click.command("demo")
@click.option("--name", default="demo", show_default=True, help="Name of the demo's model.")
@click.option(
    "--vae-epochs",
    type=SettingType("epochs"),
    default=100,
    show_default=True,
    help="VAE epochs (about 0.7 s each on 2 CPU cores).",
)
@click.option(
    "--recipe",
    type=click.Choice(VOCODER_RECIPES),
    default="vocoder_quick",
    show_default=True,
    help="Vocoder recipe: quick (minutes on a CPU), full V2 quality (hours), or tiny (smoke test).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.5, max=600),
    default=10.0,
    show_default=True,
    help="Clip seconds.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated clip.")
@click.option(
    "--example-seconds",
    type=click.FloatRange(min=0.5, max=60),
    default=3.0,
    show_default=True,
    help="Length of each of the 14 example sounds.",
)
@models_dir_option
@click.pass_context
def demo_command(
    ctx: click.Context,
    name: str,
    vae_epochs: int,
    recipe: str,
    duration: float,
    seed: int,
    example_seconds: float,
    models_dir: Path | None,
) -> None:
    """Synthesize example sounds, train a VAE and its own HiFi-GAN vocoder on them, generate a clip.

    About 6 minutes on 2 CPU cores with the defaults. Ctrl+C saves the training state; finish
    with `distillgan train vocoder demo --resume`. Running the demo again replaces its model.
    """
    from distillgan.cli.generate import generate_command
    from distillgan.cli.train import run_training
    from distillgan.examples import write_example_corpus
    from distillgan.generation import vocoder_status
    from distillgan.modelfile import default_models_dir, new_model_path
    from distillgan.runs import TrainRequest
    from distillgan.training import run_dir

    console = console_for()
    model_path = new_model_path(name, models_dir)
    corpus = default_models_dir(models_dir) / DEMO_CORPUS_FOLDER
    _check_demo_owns(model_path, corpus)
    try:
        paths = write_example_corpus(corpus, seconds=example_seconds)
    except OSError as exc:
        raise DistillganError(f"cannot write the example corpus to {corpus} ({exc.strerror})") from exc
    console.print(
        f"[bold]1/3[/bold] Example corpus: {len(paths)} synthesized sounds in {corpus}", soft_wrap=True
    )

    console.print(f"[bold]2/3[/bold] Training the VAE ({vae_epochs or 'the recipe decides its'} epochs)")
    # the demo's own model (checked above): replaced without asking, as `--overwrite` and `--yes` do
    run_training(
        TrainRequest("vae", model_path, corpus_dir=corpus, epochs=vae_epochs, resume=False, replace=True)
    )
    console.print(f"[bold]3/3[/bold] Training the model's own HiFi-GAN vocoder (recipe {recipe})")
    run_training(TrainRequest("vocoder", model_path, recipe=recipe, resume=False, replace=True))

    clip = run_dir(model_path) / f"{name}-seed{seed}.wav"
    console.print(f"Generating {duration:g} s (seed {seed}) with the best vocoder:")
    console.print(f"Auto-selection: {vocoder_status(model_path).auto_reason}", soft_wrap=True)
    # auto: the best vocoder that can be had here; the badge says which and why
    ctx.invoke(
        generate_command, model=str(model_path), seed=seed, duration=duration, output=clip, overwrite=True
    )
    runs = run_dir(model_path)
    console.print(
        "\n[bold]Done.[/bold]\n"
        f"  model        {model_path}\n"
        f"  clip         {clip}\n"
        f"  previews     {runs / 'previews'}\n"
        f"  TensorBoard  tensorboard --logdir {runs / 'tensorboard'}\n"
        f"Next: distillgan generate {name} --seed 7 · distillgan model info {name} · distillgan ui",
        soft_wrap=True,
    )
