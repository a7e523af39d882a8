"""What the Train tab shows, as plain data: status text, stats, chart frames and previews.

Pure functions of a :class:`~distillgan.ui.jobs.JobView` or a
:class:`~distillgan.ui.jobs.ModelState`, so they are tested without a browser.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from distillgan.audio import format_duration
from distillgan.errors import ConfigError
from distillgan.ui.jobs import JobView, ModelState
from distillgan.vocoders.hifigan import describe_held_out

CHART_POINTS = 400  # per series; older history is thinned for drawing, not dropped

# (metric key, series label) per chart
VAE_CHART = (("train/recon", "Training"), ("val/recon", "Held-out"))
# G's adversarial term against D's loss: both LSGAN sums on one scale. The total G loss is
# dominated by 45 x mel error, which has its own chart.
LOSS_CHART = (("train/adv", "Generator (G, adversarial)"), ("train/d_loss", "Discriminator (D)"))
MEL_CHART = (("train/mel_l1", "Training"), ("val/mel_l1", "Held-out"))

STATS = {
    "vae": (("train/loss", "Loss"), ("train/recon", "Reconstruction"), ("val/recon", "Held-out recon.")),
    "vocoder": (
        ("train/g_loss", "G loss"),
        ("train/d_loss", "D loss"),
        ("train/mel_l1", "Mel error"),
        ("val/mel_l1", "Held-out mel error"),
    ),
}
STAGE_NAMES = {"vae": "VAE", "vocoder": "Vocoder"}
STAGE_OBJECTS = {"vae": "the VAE", "vocoder": "the vocoder"}
PREVIEW_RE = re.compile(r"epoch-(\d+)_clip-(\d+)\.wav$")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _stats_table(view: JobView) -> str:
    event = view.last
    if event is None:
        return ""
    metrics = event.metrics
    epoch, step, total_epochs = event.epoch, event.step, event.total_epochs
    if view.result is not None:  # where the run really stopped, as saved
        epoch, step, total_epochs = view.result.epoch, view.result.steps, view.result.total_epochs
    headers = ["Epoch", "Step"]
    cells = [f"{epoch} / {total_epochs}", f"{step} / {event.total_steps or '?'}"]
    for key, label in STATS[view.stage]:
        headers.append(label)
        cells.append(_number(metrics[key]) if key in metrics else "—")
    if view.active:
        headers.append("ETA")
        cells.append(format_duration(event.eta_s) if event.eta_s is not None else "estimating…")
    return "| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n| " + " | ".join(cells) + " |"


def saved_line(view: JobView) -> str:
    """The cancel message, from the checkpoint that was really written ("" before any save)."""
    result = view.result
    if result is not None and result.status != "complete":
        return f"Checkpoint saved at epoch {result.epoch}. Resume anytime."
    if view.saved is not None and view.saved.message != "complete":
        return f"Checkpoint saved at epoch {view.saved.epoch}. Resume anytime."
    return ""


def status_markdown(view: JobView | None) -> str:
    """Headline, stats table and notes of a run."""
    if view is None:
        return ""
    stage = STAGE_NAMES[view.stage]
    if view.state == "preparing":
        head = "**Preparing** — loading the corpus and the recipe…"
    elif view.state == "running" and view.cancel_requested:
        head = "**Cancelling** — saving a checkpoint…"
    elif view.state == "running":
        head = f"● **{'Resuming' if view.resumed else 'Training'} {STAGE_OBJECTS[view.stage]}**"
        if view.last is None:
            head += " — starting…"
    elif view.state == "cancelled":
        head = "Cancelled before training started; nothing was changed."
    elif view.state == "failed":
        head = f"✗ **Training failed:** {view.error}"
        if saved_line(view):
            head += f"\n\n**{saved_line(view)}**"
    else:
        result = view.result
        if result is not None and result.status == "complete":
            head = (
                f"✓ **{stage} training complete** — {result.epochs_completed} epochs, {result.steps} steps."
            )
        else:
            head = f"**{saved_line(view) or 'Stopped before the first checkpoint.'}**"
    parts = [head, _stats_table(view)]
    if view.notes:
        parts.append("\n".join(f"<small>{note}</small><br>" for note in view.notes[-4:]))
    if view.skipped:  # every one: the user must know what the model did not learn from
        noun = "file" if len(view.skipped) == 1 else "files"
        lines = [f"<small>Skipped {len(view.skipped)} {noun}:</small><br>"]
        lines += [f"<small>• {html.escape(line)}</small><br>" for line in view.skipped]
        parts.append("\n".join(lines))
    return "\n\n".join(part for part in parts if part)


def tensorboard_markdown(view: JobView | None) -> str:
    if view is None or not view.log_dir:
        return ""
    log_dir = Path(view.log_dir)
    return f"TensorBoard log: `{log_dir}`  \nView every run: `tensorboard --logdir {log_dir.parent}`"


def chart_frame(view: JobView | None, series: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """Long-format points (step, value, series) for a gr.LinePlot, at most CHART_POINTS per series."""
    rows: list[tuple[int, float, str]] = []
    if view is not None:
        for key, label in series:
            points = [(step, value) for step, k, value in view.points if k == key]
            stride = max(1, -(-len(points) // CHART_POINTS))
            chosen = points[::stride]
            if points and chosen[-1] != points[-1]:
                chosen.append(points[-1])
            rows.extend((step, value, label) for step, value in chosen)
    frame = pd.DataFrame(rows, columns=["step", "value", "series"])
    return frame.astype({"step": "int64", "value": "float64", "series": "str"})


@dataclass(frozen=True)
class Preview:
    path: Path
    epoch: int
    clip: int
    mtime_ns: int

    @property
    def label(self) -> str:
        return f"Epoch {self.epoch} · clip {self.clip}"


def recent_previews(folder: Path, count: int = 3) -> list[Preview]:
    """The newest preview WAVs on disk (newest first); every preview stays in ``folder``."""
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        match = PREVIEW_RE.search(path.name)
        if match:
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            found.append((mtime, int(match[1]), int(match[2]), path))
    found.sort(key=lambda item: (item[0], item[1], -item[2]), reverse=True)
    return [Preview(path, epoch, clip, mtime) for mtime, epoch, clip, path in found[:count]]


def model_summary(state: ModelState | None, *, new_model: bool = False) -> str:
    """One short paragraph on what the selected model holds."""
    if new_model or state is None:
        return "A new model learns from a folder of 5–500 sound files (WAV, FLAC, OGG, MP3, AIFF)."
    if state.error:
        return f"⚠ {state.error}"
    if not state.exists:
        return f"Model **{state.name}** has no file yet: it is written at the VAE's first checkpoint."
    parts = [f"**{state.name}** — {vae_line(state)}", vocoder_line(state)]
    if state.manifest:
        files = state.manifest.get("files") or []
        parts.append(f"Corpus: `{state.manifest.get('root', '?')}` ({len(files)} files)")
    return " · ".join(parts)


def vae_line(state: ModelState) -> str:
    summary = state.vae_summary
    if summary is None:
        return "no VAE yet"
    if summary.get("status") == "complete":
        return f"VAE trained ({summary.get('epochs_completed', '?')} epochs)"
    return f"VAE unfinished (epoch {summary.get('epoch', '?')} of {summary.get('total_epochs', '?')})"


def vocoder_line(state: ModelState) -> str:
    vocoder = state.vocoder
    if vocoder is None:
        return "no per-model vocoder yet"
    if vocoder.get("status") == "complete":
        line = f"vocoder trained ({vocoder.get('epochs', '?')} epochs, from {vocoder.get('started_from', 'scratch')})"
        best = vocoder.get("val_mel_l1_best")
        if isinstance(best, (int, float)):
            where = describe_held_out(vocoder.get("held_out_files"))
            line += f": held-out mel error {best:.3g} on {where}, epoch {vocoder.get('best_epoch', '?')} kept"
        return line
    return f"vocoder unfinished (epoch {vocoder.get('epoch', '?')} of {vocoder.get('total_epochs', '?')})"


def vocoder_notice(state: ModelState | None, vae_running: bool) -> str:
    """Why the vocoder section is locked, or what it will do."""
    if state is None or not state.exists:
        return "Train the VAE first: this section unlocks when the model has a trained VAE."
    if vae_running:
        return "The VAE is training: this section unlocks when it finishes."
    summary = state.vae_summary
    if summary is not None and not state.vae_complete:
        return (
            f"The VAE is unfinished (epoch {summary.get('epoch', '?')} of {summary.get('total_epochs', '?')}): "
            "resume it to the end; this section unlocks when it is trained."
        )
    if not state.can_train_vocoder:
        return "Train the VAE first: this section unlocks when the model has a trained VAE."
    line = vocoder_line(state)
    return f"{line[0].upper()}{line[1:]}."


def parse_number(text: Any, label: str, *, integer: bool = False) -> float | int | None:
    """A form field's number, or None when it was left empty (the recipe's value is used)."""
    text = str(text if text is not None else "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{label} must be a number, got '{text}'") from None
    if integer:
        if not value.is_integer():
            raise ConfigError(f"{label} must be a whole number, got '{text}'")
        return int(value)
    return value
