"""`cade top`: a full-screen live view of the ledger, redrawn after each sync or key press.

The frame itself is `views.render_frame`, a pure function of a `Snapshot`; this module only
reads the ledger, calls the injected `sync` at most once per interval, and handles keys:
n / p / tab switch experiment, s cycles the sort, r reverses it, q (or Ctrl-C) quits.
Keys are read with `select` on stdin in cbreak mode; the terminal settings are restored on
every way out.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live

from cade_cli import interrupts
from cade_cli.errors import CadeError
from cade_cli.views.frames import render_frame
from cade_cli.views.model import SORTS, LedgerReader, Snapshot, read_page


def terminal_console(width: int | None) -> Console:
    """The console `cade top` draws on: the terminal's width unless one is given."""
    return Console(width=width) if width else Console()

NEXT_KEYS = ("n", "\t")
PREVIOUS_KEYS = ("p", "\x1b[Z")  # p, shift-tab
QUIT_KEYS = ("q", "Q", "\x03")  # \x03: Ctrl-C when it arrives as a byte (signals disabled)


@dataclass(frozen=True)
class TopState:
    experiment_id: int | None = None
    sort: str = "metric"
    reverse: bool = False


def apply_key(state: TopState, key: str, experiment_ids: list[int]) -> TopState | None:
    """The state after `key`; None means quit. Unknown keys change nothing."""
    if key in QUIT_KEYS:
        return None
    if key in NEXT_KEYS + PREVIOUS_KEYS and experiment_ids:
        step = 1 if key in NEXT_KEYS else -1
        index = (experiment_ids.index(state.experiment_id) + step
                 if state.experiment_id in experiment_ids else 0)
        return replace(state, experiment_id=experiment_ids[index % len(experiment_ids)])
    if key == "s":
        return replace(state, sort=SORTS[(SORTS.index(state.sort) + 1) % len(SORTS)])
    if key == "r":
        return replace(state, reverse=not state.reverse)
    return state


def load_snapshot(ledger: LedgerReader, experiment_id: int | None, taken: float,
                  message: str = "", sort: str = "metric", reverse: bool = False,
                  rows: int = 50) -> Snapshot:
    """All experiments, and a page of `experiment_id` (the latest when None or gone): its
    first `rows` trials in the frame's order, every trial counted (`read_page`)."""
    experiments = tuple(ledger.experiments())
    chosen = [e for e in experiments if e.id == experiment_id]
    if not chosen and experiments:
        chosen = [max(experiments, key=lambda e: (e.created, e.id))]
    current = read_page(ledger, chosen[0], sort, reverse, rows) if chosen else None
    return Snapshot(experiments, current, taken, message)


class KeyReader:
    """Single key presses from a terminal (cbreak mode); nothing when stdin is no terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.fd = stream.fileno() if stream.isatty() else None
        self.saved: list[Any] | None = None

    def __enter__(self) -> KeyReader:
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.fd is not None and self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> str | None:
        """The next key (an escape sequence stays whole), or None after `timeout` seconds."""
        if self.fd is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return None
        data = os.read(self.fd, 16)
        return data.decode(errors="replace") if data else None


def _trial_rows(console: Console, snapshot: Snapshot, state: TopState) -> int:
    """How many trial rows fit on the screen below everything else in the frame."""
    frame = render_frame(snapshot, console.width, state.sort, state.reverse, max_rows=1)
    used = len(console.render_lines(frame, console.options, pad=False))
    return max(console.height - used, 3)


def run_top(ledger: LedgerReader, experiment_id: int | None = None,
            sync: Callable[[], None] | None = None, interval: float = 5.0,
            console: Console | None = None, keys: TextIO | None = None) -> None:
    """Show the live view until q or Ctrl-C. `sync` runs at most once per `interval`."""
    console = console or Console()
    state = TopState(experiment_id)
    last_sync = -float("inf")
    message = ""
    try:
        with KeyReader(keys or sys.stdin) as reader, \
                Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                interrupts.raise_if_lost()
                if sync is not None and time.monotonic() - last_sync >= interval:
                    last_sync = time.monotonic()
                    message = try_sync(sync)
                # No more trial rows than the screen has lines.
                snapshot = load_snapshot(ledger, state.experiment_id, time.time(), message,
                                         state.sort, state.reverse, console.height)
                if state.experiment_id is None and snapshot.current is not None:
                    state = replace(state, experiment_id=snapshot.current.experiment.id)
                rows = _trial_rows(console, snapshot, state)
                live.update(render_frame(snapshot, console.width, state.sort, state.reverse,
                                         max_rows=rows), refresh=True)
                wait = interval - (time.monotonic() - last_sync) if sync else interval
                key = reader.read(max(wait, 0.05))
                if key is not None:
                    ids = [e.id for e in snapshot.experiments]
                    new_state = apply_key(state, key, ids)
                    if new_state is None:
                        return
                    state = new_state
    except KeyboardInterrupt:
        return  # Ctrl-C is the usual way out of a viewer: exit quietly


def try_sync(sync: Callable[[], None]) -> str:
    """Sync; a failure is shown in the frame (the view keeps running), not raised."""
    try:
        sync()
    except CadeError as err:
        return f"sync failed: {err.message}" + (f" ({err.hint})" if err.hint else "")
    return ""
