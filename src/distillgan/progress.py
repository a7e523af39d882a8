"""The one progress-event type of the project, shared by CLI (Rich), UI (Gradio) and tests,
and the one wording of what it carries: metric labels and epoch counts.

**Metric labels.** :data:`METRICS` names every figure a training run logs, once: its key (what
the LightningModules log, and so the TensorBoard tag), its label (the same in the Rich table,
the plain log lines, the UI's table and its chart legends) and what it is. :data:`TABLE` lists
the figures each stage's progress table shows.

**Epochs.** Every place counts *completed* epochs: "6 of 400 epochs done" while epoch 7 runs,
"Checkpoint saved at epoch 6. Resume anytime." for a state saved after 6 epochs (also one
saved part-way through the 7th: the resumed run goes on from that exact step), "Resume after
epoch 6", and ``model info``'s "partial, 6 of 400 epochs done". Use :func:`epochs_done` and
:func:`checkpoint_saved` for the words, :attr:`ProgressEvent.epochs_done` and the model file's
``epochs_completed`` (both stages' records, :class:`~distillgan.modelfile.StageRecord`) for the number.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from distillgan.modelfile.records import VocoderRecord

EventKind = Literal["start", "step", "epoch", "preview", "checkpoint", "end", "error"]


@dataclass(frozen=True)
class ProgressEvent:
    """What happened in a training run, in the user's units (generator steps for the vocoder).

    ``epoch`` is the epoch the event belongs to, counted from 1 (a preview's or a checkpoint's
    epoch, the epoch a step is in); ``epochs_done`` the epochs completed, which is what every
    front end shows (see :func:`epochs_done`).
    """

    stage: Literal["vae", "vocoder"]
    kind: EventKind
    epoch: int = 0
    epochs_done: int = 0
    total_epochs: int = 0
    step: int = 0
    total_steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    message: str = ""
    path: str | None = None  # preview WAV, model file or log directory, depending on kind


ProgressListener = Callable[[ProgressEvent], None]


class CancelToken:
    """Thread-safe cancel request shared by the CLI's Ctrl+C handler, the UI and tests."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


# ---------------------------------------------------------------------------------------------
# Metric labels: one name per figure, everywhere


@dataclass(frozen=True)
class Metric:
    key: str  # what the LightningModule logs: the TensorBoard tag
    label: str  # shown in every front end
    means: str  # what the number is (README, tooltips)


METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric(
            "train/g_loss",
            "G total (weighted)",
            "the generator's whole loss: adversarial + 2 × feature matching + 45 × mel error "
            "(+ the recipe's STFT and DC terms); in the warm-up, 45 × mel error + the STFT and DC terms",
        ),
        Metric(
            "train/adv", "G adversarial", "the generator's LSGAN term alone, on the discriminators' scale"
        ),
        Metric(
            "train/fm",
            "feature matching",
            "L1 between the discriminators' features of real and generated audio",
        ),
        Metric(
            "train/mel_l1", "mel error", "L1 between generated and real log-mel spectrograms (training crops)"
        ),
        Metric(
            "train/stft", "STFT loss", "multi-resolution STFT loss (warm-up, or when the recipe weighs it)"
        ),
        Metric("train/dc", "DC error", "the difference of generated and real crops' mean (DC offset)"),
        Metric("train/d_loss", "D loss", "the discriminators' LSGAN loss on real and generated audio"),
        Metric("val/mel_l1", "held-out mel error", "the mel error on the held-out clips, never trained on"),
        Metric(
            "val/network_mel_l1",
            "network's held-out error",
            "the network's own mel error on the held-out clips, before level matching: the lowest epoch is kept",
        ),
        Metric("lr", "learning rate", "the generator's learning rate"),
        Metric("train/loss", "VAE total (weighted)", "reconstruction + KL weight × KL (the weight ramps up)"),
        Metric("train/recon", "reconstruction", "mean squared error of the normalized mel (training chunks)"),
        Metric("train/kl", "KL", "KL divergence of the latent from a standard normal"),
        Metric("val/recon", "held-out reconstruction", "reconstruction on held-out chunks, never trained on"),
        Metric("val/loss", "held-out VAE total", "held-out reconstruction + the full KL weight × KL"),
    )
}

# The figures each stage's progress table shows (Rich, plain log lines, UI), in order
TABLE: dict[str, tuple[str, ...]] = {
    "vae": ("train/loss", "train/recon", "train/kl", "val/recon"),
    "vocoder": (
        "train/g_loss",
        "train/adv",
        "train/d_loss",
        "train/mel_l1",
        "val/mel_l1",
        "val/network_mel_l1",
    ),
}


def labelled(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(key, label)`` pairs for ``keys``, labels from :data:`METRICS` (a table's columns, a
    chart's series)."""
    return tuple((key, METRICS[key].label) for key in keys)


# ---------------------------------------------------------------------------------------------
# Epochs: completed ones, everywhere


def epochs_done(done: Any, total: Any = None) -> str:
    """The one wording of an epoch count: ``6 of 400 epochs done`` (``6 epochs done`` without a
    total; ``?`` for a count that is not one). Counts may come from a model file (untrusted)."""
    done_text = str(done) if _count(done) else "?"
    of = f" of {total}" if _count(total) and total else ""
    noun = "epoch" if done == 1 and not of else "epochs"
    return f"{done_text}{of} {noun} done"


def checkpoint_saved(done: Any) -> str:
    """The cancel/stop message; ``done`` is the epochs the saved state completed."""
    return f"Checkpoint saved at epoch {done if _count(done) else '?'}. Resume anytime."


def kept_epoch(vocoder: VocoderRecord) -> str:
    """Which epoch's vocoder a model file holds and its held-out figures, as both front ends say
    it: ``epoch 7 kept (held-out mel error 0.0601; the network's own 0.43, the lowest, from 0.52
    at the start)``. Files from before the network's error chose have only the first figure, and
    files from before the start was scored (or of random starts) no start."""
    epoch, mel_l1, network = vocoder.best_epoch, vocoder.val_mel_l1_best, vocoder.val_network_mel_l1_best
    start = vocoder.start_network_mel_l1
    if epoch == 0:
        if start is None or mel_l1 is None or network is None:  # no epoch was validated
            return "the last epoch kept (none was scored on held-out clips)"
        return (
            f"the vocoder it started from ({vocoder.started_from}) kept: no epoch beat it on held-out "
            f"clips (held-out mel error {mel_l1:.3g}; the network's own {network:.3g})"
        )
    text = f"epoch {epoch if _count(epoch) else '?'} kept"
    if mel_l1 is not None:
        text += f" (held-out mel error {mel_l1:.3g}"
        if network is not None:
            text += f"; the network's own {network:.3g}, the lowest" + (
                "" if start is None else f", from {start:.3g} at the start"
            )
        text += ")"
    return text


def resume_after(done: Any) -> str:
    """How a resume is offered: ``Resume after epoch 6`` (``Resume`` before the first epoch ends)."""
    return f"Resume after epoch {done}" if _count(done) and done else "Resume"


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
