"""What the Train tab shows, as plain data: status text, stats, chart frames and previews.

Pure functions of a :class:`~distillgan.ui.jobs.JobView` or a
:class:`~distillgan.ui.jobs.ModelState`, so they are tested without a browser.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf

from distillgan.callbacks.previews import PREVIEW_RE, reference_name
from distillgan.corpus import format_duration
from distillgan.data import HOLD_OUT_FILES_FROM
from distillgan.errors import ConfigError
from distillgan.lightning_modules.hifigan import PREVIEW_SECONDS
from distillgan.modelfile import StageRecord
from distillgan.progress import TABLE, checkpoint_saved, epochs_done, kept_epoch, labelled
from distillgan.ui.jobs import JobView, ModelState
from distillgan.vocoders.hifigan import describe_held_out

CHART_POINTS = 400  # per series; older history is thinned for drawing, not dropped

# (metric key, series label) per chart; every label comes from progress.METRICS, as in the CLI
VAE_CHART = labelled(("train/recon", "val/recon"))
# G's adversarial term against D's loss: both LSGAN sums on one scale. The weighted G total is
# dominated by 45 x mel L1, which has its own chart.
LOSS_CHART = labelled(("train/adv", "train/d_loss"))
MEL_CHART = labelled(("train/mel_l1", "val/mel_l1", "val/network_mel_l1"))
# the stats table: the CLI's table, same figures, same labels
STATS = {stage: labelled(keys) for stage, keys in TABLE.items()}
STAGE_NAMES = {"vae": "VAE", "vocoder": "Vocoder"}
STAGE_OBJECTS = {"vae": "the VAE", "vocoder": "the vocoder"}


def _number(value: float) -> str:
    return f"{value:.4g}"


def _stats_table(view: JobView) -> str:
    event = view.last
    if event is None:
        return ""
    metrics = event.metrics
    done, step, total_epochs = event.epochs_done, event.step, event.total_epochs
    if view.result is not None:  # where the run really stopped, as saved
        done, step, total_epochs = view.result.epochs_completed, view.result.steps, view.result.total_epochs
    headers = ["Progress", "Step"]
    cells = [epochs_done(done, total_epochs), f"{step} / {event.total_steps or '?'}"]
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
        return checkpoint_saved(result.epochs_completed)
    if view.saved is not None and view.saved.message != "complete":
        return checkpoint_saved(view.saved.epochs_done)
    return ""


def status_markdown(view: JobView | None) -> str:
    """Headline, stats table and notes of a run."""
    if view is None:
        return ""
    stage = STAGE_NAMES[view.stage]
    if view.state == "preparing":
        head = "**Preparing** — loading the corpus and the recipe…"
    elif view.state == "confirming":
        head = "**Waiting for your go-ahead** — this run is estimated to take over an hour."
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
    """One clip of the newest previewed epoch, with the original it renders, for A/B."""

    path: Path
    epoch: int
    clip: int
    mtime_ns: int
    reference: Path | None  # the held-out original (``reference_clip-K.wav``), when on disk
    seconds: float | None  # None when the file cannot be read (e.g. being written)

    @property
    def label(self) -> str:
        return f"Epoch {self.epoch} · clip {self.clip}"

    @property
    def reference_label(self) -> str:
        return f"Reference · clip {self.clip}"


def recent_previews(folder: Path) -> list[Preview]:
    """The newest epoch's previews on disk, in clip order, each with its reference: the epoch of
    the most recently written preview (every earlier one stays in ``folder``)."""
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        match = PREVIEW_RE.match(path.name)
        if match:
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            found.append((mtime, int(match[1]), int(match[2]), path))
    if not found:
        return []
    newest = max(found)[1]
    out = []
    for mtime, epoch, clip, path in sorted(item for item in found if item[1] == newest):
        reference: Path | None = folder / reference_name(clip)
        if not reference.is_file():
            reference = None
        out.append(Preview(path, epoch, clip, mtime, reference, _seconds(path)))
    return sorted(out, key=lambda p: p.clip)


def _seconds(path: Path) -> float | None:
    try:
        return sf.info(str(path)).duration
    except (OSError, RuntimeError):  # soundfile raises RuntimeError for a file it cannot parse
        return None


def previews_note(previews: list[Preview], shown: int, folder: Path | None) -> str:
    """Under the preview players: what they are, what is not shown, where every file is."""
    if not previews:
        return "Previews of held-out audio appear here as the vocoder trains, each beside its original."
    lines = [
        f"Epoch {previews[0].epoch}: each held-out clip as the vocoder renders it, beside the original "
        f"(reference). Every preview is kept in `{folder}`."
    ]
    if len(previews) > shown:
        lines.append(f"{len(previews) - shown} more clips of this epoch are in that folder.")
    seconds = [p.seconds for p in previews if p.seconds is not None]
    if seconds and min(seconds) < PREVIEW_SECONDS - 0.05:
        lines.append(
            f"These clips are {min(seconds):.2f} s: all the held-out audio this corpus and recipe give "
            "(clips cut from the ends of training files, `val_clip_seconds` long; a corpus of "
            f"{HOLD_OUT_FILES_FROM} or more files previews {PREVIEW_SECONDS:g} s of its held-out files)."
        )
    return "  \n".join(lines)


def model_summary(
    state: ModelState | None, *, new_model: bool = False, totals: dict[str, int] | None = None
) -> str:
    """One short paragraph on what the selected model holds; ``totals``: the epochs of the stages'
    live runs, which count before their first save writes them."""
    if new_model or state is None:
        return "A new model learns from a folder of 5–500 sound files (WAV, FLAC, OGG, MP3, AIFF)."
    if state.error:
        return f"⚠ {state.error}"
    if not state.exists:
        return f"Model **{state.name}** has no file yet: it is written at the VAE's first checkpoint."
    totals = totals or {}
    parts = [
        f"**{state.name}** — {vae_line(state, totals.get('vae'))}",
        vocoder_line(state, totals.get("vocoder")),
    ]
    if state.manifest:
        files = state.manifest.get("files") or []
        parts.append(f"Corpus: `{state.manifest.get('root', '?')}` ({len(files)} files)")
    return " · ".join(parts)


def _unfinished(saved: StageRecord, total: int | None) -> str:
    """An unfinished run's count: the epochs saved, of the live run's total when one runs (a
    resumed run may end elsewhere than the run it continues)."""
    return epochs_done(saved.epochs_completed, total or saved.total_epochs)


def vae_line(state: ModelState, total: int | None = None) -> str:
    vae = state.vae
    if vae is None:
        return "no VAE yet"
    if vae.complete:
        return f"VAE trained ({epochs_done(vae.epochs_completed, vae.total_epochs)})"
    return f"VAE unfinished ({_unfinished(vae, total)})"


def vocoder_line(state: ModelState, total: int | None = None) -> str:
    vocoder = state.vocoder
    if vocoder is None:
        return "no per-model vocoder yet"
    if vocoder.complete:
        done = epochs_done(vocoder.epochs_completed, vocoder.total_epochs)
        line = f"vocoder trained ({done}, from {vocoder.started_from or 'scratch'})"
        if vocoder.val_mel_l1_best is not None:
            line += f": {kept_epoch(vocoder)} on {describe_held_out(vocoder.held_out_files)}"
        return line
    return f"vocoder unfinished ({_unfinished(vocoder, total)})"


def vocoder_notice(state: ModelState | None, vae_running: bool) -> str:
    """Why the vocoder section is locked, or what it will do."""
    if state is None or not state.exists:
        return "Train the VAE first: this section unlocks when the model has a trained VAE."
    if vae_running:
        return "The VAE is training: this section unlocks when it finishes."
    vae = state.vae
    if vae is not None and not vae.complete:
        return (
            f"The VAE is unfinished ({epochs_done(vae.epochs_completed, vae.total_epochs)}): "
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
