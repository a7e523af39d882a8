"""The one progress-event type of the project, shared by CLI (Rich), UI (Gradio) and tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

EventKind = Literal["start", "step", "epoch", "preview", "checkpoint", "end", "error"]


@dataclass(frozen=True)
class ProgressEvent:
    """What happened in a training run, in the user's units (epochs counted from 1, generator steps)."""

    stage: Literal["vae", "vocoder"]
    kind: EventKind
    epoch: int = 0
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
