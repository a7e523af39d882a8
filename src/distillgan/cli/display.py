"""Rich live display of training progress, fed by ProgressEvents."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from distillgan.progress import TABLE, CancelToken, ProgressEvent, epochs_done, labelled

# (metric key, column title) per stage: the one table of labels (keys are what the modules log)
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {stage: labelled(keys) for stage, keys in TABLE.items()}
# Without a terminal the live table cannot redraw: a plain line per epoch instead, and one at
# least this often within a long epoch.
PLAIN_LINE_INTERVAL_S = 30.0


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingDisplay:
    """A live table (epoch, losses, ETA) above a progress bar; call it with each event.

    Output that is not a terminal (a log file, a pipe) gets the table's figures as one plain
    line per epoch, and every PLAIN_LINE_INTERVAL_S within a long one; the table itself is
    printed once, at the end.
    """

    def __init__(self, console: Console, stage: str) -> None:
        self.console = console
        self.stage = stage
        self.last: ProgressEvent | None = None
        self.last_line_at = time.monotonic()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=console
        )
        self.task = self.progress.add_task(stage, total=None)
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def _render(self) -> Group:
        table = Table(show_header=True, header_style="bold", box=None)
        table.add_column("epochs done", no_wrap=True)
        columns = COLUMNS[self.stage]
        for _, title in columns:
            # a narrow terminal wraps a label between its words, never inside one
            table.add_column(title, justify="right", min_width=max(map(len, title.split())))
        table.add_column("ETA", justify="right")
        e = self.last
        if e is not None:
            values = [f"{e.metrics[k]:.4g}" if k in e.metrics else "–" for k, _ in columns]
            # "6 of 400" under "epochs done": the plain lines' "6 of 400 epochs done"
            done = epochs_done(e.epochs_done, e.total_epochs).removesuffix(" epochs done")
            table.add_row(done, *values, format_eta(e.eta_s))
        return Group(table, self.progress)

    def plain_line(self, event: ProgressEvent) -> str:
        """The table's figures as one line, e.g.
        ``3 of 200 epochs done · step 24/1600 · G total (weighted) 41.2 · … · ETA 5:12``."""
        figures = [
            epochs_done(event.epochs_done, event.total_epochs),
            f"step {event.step}/{event.total_steps or '?'}",
        ]
        figures += [
            f"{title} {event.metrics[k]:.4g}" for k, title in COLUMNS[self.stage] if k in event.metrics
        ]
        return " · ".join([*figures, f"ETA {format_eta(event.eta_s)}"])

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "start" and event.path:
            self.console.print(f"TensorBoard: tensorboard --logdir {escape(event.path)}", soft_wrap=True)
        if event.kind in ("step", "epoch", "start", "end"):
            self.last = event
            self.progress.update(self.task, total=event.total_steps or None, completed=event.step)
            self.live.update(self._render())
        now = time.monotonic()
        if not self.console.is_terminal and (
            event.kind == "epoch"
            or (event.kind == "step" and now - self.last_line_at >= PLAIN_LINE_INTERVAL_S)
        ):
            self.console.print(self.plain_line(event), markup=False, highlight=False, soft_wrap=True)
            self.last_line_at = now
        elif event.kind == "preview" and event.path is None:  # it could not be written
            self.console.print(f"[yellow]warning:[/yellow] {escape(event.message)}", soft_wrap=True)
        elif event.kind == "preview":
            self.console.print(
                f"[dim]preview (epoch {event.epoch}): {escape(event.path)}[/dim]", soft_wrap=True
            )

    def __enter__(self) -> TrainingDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)
        if not self.console.is_terminal:
            self.console.line()  # Rich ends the last frame with a newline only on a terminal


@contextmanager
def cancel_on_ctrl_c(token: CancelToken, console: Console) -> Iterator[None]:
    """First Ctrl+C asks training to stop and save; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel("Ctrl+C")
        console.print("[yellow]Stopping: saving a checkpoint… (Ctrl+C again to quit without saving)[/yellow]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
