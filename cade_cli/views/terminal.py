"""What may reach a terminal: text from trials, specs and schedulers with the control
characters taken out.

A name, a parameter value, a metric name or a message holding ESC/OSC/CSI sequences would
otherwise act on the terminal that shows it (set the window title, clear the screen, hide
what follows). Every view applies `printable` where such strings are rendered; `cade logs`
alone prints a job's output as it is, as `cat` would.
"""

from __future__ import annotations

import re

# Whole sequences first (so that no half of one is left to show): CSI (ESC [ or the C1 byte),
# OSC / DCS / APC / PM / SOS strings up to their terminator, then two-byte escapes.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]P_^X]|[\x9d\x90\x9f\x9e\x98])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1
_LINE_BREAK = re.compile(r"[\t\n]")


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` (as str) without control characters; tabs and newlines become spaces unless
    `keep_newlines` (then a newline stays, for multi-line messages)."""
    clean = _CONTROL.sub("", _SEQUENCE.sub("", str(text)))
    if keep_newlines:
        return clean.replace("\t", " ")
    return _LINE_BREAK.sub(" ", clean)


def short_number(value: float) -> str:
    """A float as tables and summaries show it: 4 significant digits (JSON output keeps it exact)."""
    return f"{value:.4g}"
