"""``distillgan`` entry point. Keep module-level imports light: ``--help`` must not load torch."""

from __future__ import annotations

import sys

import click

from distillgan import __version__
from distillgan.errors import DistillganError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="distillgan")
def cli() -> None:
    """Learn a generative sound model from your own audio, and a neural vocoder to hear it."""


@cli.group()
def train() -> None:
    """Train a model's stages: first `vae`, then `vocoder`."""


@cli.group()
def model() -> None:
    """List, inspect, rename, delete and compact models."""


from distillgan.cli import generate as _generate  # noqa: E402
from distillgan.cli import models as _models  # noqa: E402
from distillgan.cli import train as _train  # noqa: E402

train.add_command(_train.train_vae_command)
train.add_command(_train.train_vocoder_command)
model.add_command(_models.model_list)
model.add_command(_models.model_info)
model.add_command(_models.model_rename)
model.add_command(_models.model_delete)
model.add_command(_models.model_compact)
cli.add_command(_generate.generate_command)
cli.add_command(_generate.vocode_command)
from distillgan.cli.demo import demo_command  # noqa: E402
from distillgan.cli.ui import ui_command  # noqa: E402

cli.add_command(ui_command)
cli.add_command(demo_command)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user mistakes become one line on stderr and a non-zero exit code."""
    try:
        cli.main(args=argv, prog_name="distillgan", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except DistillganError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
