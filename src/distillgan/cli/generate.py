"""`distillgan generate` and `distillgan vocode`: a clip through the best vocoder, with its badge.

Only click (and torch-free choice lists) at import time: torch loads when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from distillgan.cli.common import console_for, models_dir_option
from distillgan.errors import DistillganError
from distillgan.vocoders.choices import (
    BIT_DEPTHS,
    DEFAULT_DURATION_S,
    SAMPLE_RATES,
    VOCODER_CHOICES,
    WRITABLE_SUFFIXES,
)


def _output_options(f: Any) -> Any:
    options = [
        click.option(
            "--vocoder",
            type=click.Choice(VOCODER_CHOICES),
            default="auto",
            show_default=True,
            help="auto: the model's own HiFi-GAN when it is ready, else the universal BigVGAN-v2.",
        ),
        click.option(
            "--sample-rate",
            type=click.Choice([str(rate) for rate in SAMPLE_RATES]),
            default=str(SAMPLE_RATES[0]),
            show_default=True,
            help="Sample rate of the written file (Hz).",
        ),
        click.option(
            "--bit-depth",
            type=click.Choice(BIT_DEPTHS),
            default=BIT_DEPTHS[0],
            show_default=True,
            help="16 or 24-bit PCM, or 32-bit float (WAV only).",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Output .wav or .flac (default: a new file in the current folder).",
        ),
        click.option(
            "--loudness",
            type=float,
            default=None,
            metavar="LUFS",
            help="Normalise to this integrated loudness (BS.1770), e.g. -14; the peak still stays "
            "below 0 dBFS. Default: the level as vocoded.",
        ),
        click.option("--overwrite", is_flag=True, help="Replace the output file if it exists."),
        click.option("--json", "as_json", is_flag=True, help="Print the quality badge as one JSON object."),
        click.option(
            "--bigvgan-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder with BigVGAN-v2's config.json and bigvgan_generator.pt "
            "(default: $DISTILLGAN_BIGVGAN_DIR, else the Hugging Face cache, downloading once).",
        ),
    ]
    f = models_dir_option(f)  # applied first: listed last
    for option in reversed(options):
        f = option(f)
    return f


def check_output(path: Path | None, bit_depth: str, overwrite: bool) -> None:
    """Refuse a bad output path before any work is done."""
    if path is None:
        return
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise DistillganError(f"cannot write {path}: the output must end in .wav or .flac")
    if suffix == ".flac" and bit_depth == "32f":
        raise DistillganError(
            f"cannot write {path}: FLAC holds 16- or 24-bit audio; use .wav for 32-bit float"
        )
    if not path.expanduser().parent.is_dir():
        raise DistillganError(f"cannot write {path}: folder {path.expanduser().parent} does not exist")
    if path.expanduser().exists() and not overwrite:
        raise DistillganError(f"{path} already exists: pass --overwrite to replace it, or choose another -o")


def unique_path(folder: Path, stem: str, suffix: str = ".wav") -> Path:
    """``folder/stem.wav``, or ``stem-2.wav``, ``stem-3.wav``… : the first name not taken."""
    candidate = folder / f"{stem}{suffix}"
    number = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{number}{suffix}"
        number += 1
    return candidate


class DownloadBar:
    """A Rich progress bar for the one-time BigVGAN download, shown only if a download happens."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __call__(self, filename: str, done: int, total: int) -> None:
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.console.print("Downloading the universal BigVGAN-v2 vocoder (first use only)…")
            self.progress.start()
        if filename not in self.tasks:
            self.tasks[filename] = self.progress.add_task(filename, total=total or None)
        self.progress.update(self.tasks[filename], completed=done, total=total or None)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _announce(err: Any, text: str) -> None:
    """What is being done, for a person watching a terminal; scripts read only warnings and errors."""
    if err.is_terminal:
        err.print(text, markup=False, style="dim")


def _report(result: Any, path: Path, model_name: str, as_json: bool) -> None:
    """The badge on stdout: its text, or one JSON object (plain echo: no wrapping of paths)."""
    badge = result.badge
    if as_json:
        if badge.warning:
            click.echo(f"warning: {badge.warning}", err=True)
        click.echo(json.dumps({**badge.to_dict(), "model": model_name, "path": str(path)}))
        return
    click.echo(badge.describe())
    click.echo(f"Saved to {path}")


@click.command("generate")
@click.argument("model")
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the latent walk: same seed, same clip (default: a fresh random seed each time, "
    "printed with the result).",
)
@click.option(
    "--duration",
    type=float,
    default=DEFAULT_DURATION_S,
    show_default=True,
    help="Length of the clip in seconds.",
)
@_output_options
def generate_command(
    model: str,
    seed: int | None,
    duration: float,
    vocoder: str,
    sample_rate: str,
    bit_depth: str,
    output: Path | None,
    loudness: float | None,
    overwrite: bool,
    as_json: bool,
    bigvgan_dir: Path | None,
    models_dir: Path | None,
) -> None:
    """Generate a new clip from MODEL (a name in the models folder, or a .distillgan path).

    Writes a new take ./MODEL_seedN_takeNN.wav unless -o is given (numbered, never
    overwriting a file; the UI names its takes the same way) and prints the quality badge:
    vocoder used and why, seed, rate, depth, loudness, peak, the DC offset removed, clipping.
    """
    from distillgan.generation import check_generate_args, generate, new_seed, write_generation, write_take
    from distillgan.modelfile import resolve_model

    path = resolve_model(model, models_dir)
    seed = new_seed() if seed is None else seed
    check_generate_args(
        seed=seed,
        duration_s=duration,
        sample_rate=int(sample_rate),
        bit_depth=bit_depth,
        loudness_lufs=loudness,
    )
    check_output(output, bit_depth, overwrite)
    err = console_for(stderr=True)
    _announce(err, f"Generating {duration:g} s from '{path.stem}' (seed {seed})…")
    bar = DownloadBar(err)
    try:
        result = generate(
            path,
            seed=seed,
            duration_s=duration,
            vocoder=vocoder,  # type: ignore[arg-type]
            sample_rate=int(sample_rate),
            bit_depth=bit_depth,
            bigvgan_dir=bigvgan_dir,
            download_progress=bar,
            loudness_lufs=loudness,
        )
    finally:
        bar.close()
    if output is None:
        written = write_take(Path.cwd(), path.stem, result)
    else:
        written = write_generation(output, result, overwrite=overwrite)
    _report(result, written, path.stem, as_json)


@click.command("vocode")
@click.argument("model")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@_output_options
def vocode_command(
    model: str,
    input_file: Path,
    vocoder: str,
    sample_rate: str,
    bit_depth: str,
    output: Path | None,
    loudness: float | None,
    overwrite: bool,
    as_json: bool,
    bigvgan_dir: Path | None,
    models_dir: Path | None,
) -> None:
    """Vocode the mel of INPUT (any sound file) with MODEL's best vocoder: hear its fidelity.

    Writes ./INPUT-vocoded-VOCODER.wav unless -o is given (never overwriting an existing file).
    """
    from distillgan.generation import check_export_args, vocode_file, write_generation
    from distillgan.modelfile import resolve_model

    path = resolve_model(model, models_dir)
    check_export_args(sample_rate=int(sample_rate), bit_depth=bit_depth, loudness_lufs=loudness)
    check_output(output, bit_depth, overwrite)
    err = console_for(stderr=True)
    _announce(err, f"Vocoding {input_file} with '{path.stem}'…")
    bar = DownloadBar(err)
    try:
        result = vocode_file(
            path,
            input_file,
            vocoder=vocoder,  # type: ignore[arg-type]
            sample_rate=int(sample_rate),
            bit_depth=bit_depth,
            bigvgan_dir=bigvgan_dir,
            download_progress=bar,
            loudness_lufs=loudness,
        )
    finally:
        bar.close()
    target = output or unique_path(Path.cwd(), f"{input_file.stem}-vocoded-{result.badge.vocoder}")
    written = write_generation(target, result, overwrite=overwrite)
    _report(result, written, path.stem, as_json)
