"""A Ctrl-C that CPython loses is not lost to cade's commands.

CPython 3.11 cannot raise a KeyboardInterrupt out of every place the signal can land:
one raised inside a weakref callback is printed as "Exception ignored" and dropped (the
import system's module locks run such callbacks), and one raised inside `__set_name__`
comes out wrapped in a RuntimeError. So a Ctrl-C in the first tenth of a second of a
command, while it is still importing, could vanish (and `cade top` would run on until a
second one) or end in a traceback.

`install()` (the command line's entry point calls it) makes every SIGINT leave a note
before it raises, and keeps CPython's "Exception ignored" report of a dropped one (a
traceback) off the screen. The command line reads any exception that follows a note as the
interrupt, and the loops a user waits on call `raise_if_lost()` once a round.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

UnraisableHook = Callable[["sys.UnraisableHookArgs"], Any]

_noted = False  # a SIGINT arrived (since install): the command is to end as interrupted


def install() -> None:
    """Note every SIGINT before raising KeyboardInterrupt as Python does. Left as it is
    when SIGINT is not Python's (ignored in a background job, or a caller's own handler)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _note_and_raise)
        sys.unraisablehook = _unless_dropped_interrupt(sys.unraisablehook)


def _note_and_raise(signum: int, frame: FrameType | None) -> None:
    global _noted
    _noted = True
    raise KeyboardInterrupt


def _unless_dropped_interrupt(report: UnraisableHook) -> UnraisableHook:
    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if not (_noted and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            report(unraisable)  # anything else is reported as before
    return hook


def noted() -> bool:
    """Whether a SIGINT arrived since `install()`."""
    return _noted


def raise_if_lost() -> None:
    """Raise the KeyboardInterrupt of a SIGINT that arrived: at a loop's round, one that
    CPython dropped ends the command after all (a caught one has ended it already)."""
    if _noted:
        raise KeyboardInterrupt
