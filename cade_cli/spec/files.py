"""Reading a user's input file (an experiment spec, the settings file) with a size cap.

A spec is a page of YAML; the cap keeps a wrong path (`/dev/zero`, a data file, a log) from
costing minutes and gigabytes before it is refused: at most MAX_INPUT_BYTES + 1 bytes are ever
read. Pipes, process substitutions (`<(...)`) and `/dev/null` (an empty file: no settings)
are read the same way; a directory is refused by name.
"""

from __future__ import annotations

from pathlib import Path

from cade_cli.errors import SpecError

MAX_INPUT_BYTES = 1024 * 1024  # 1 MiB: documented in README ("What cade promises")


def read_capped(path: str | Path, what: str, *, encoding: str = "utf-8") -> str:
    """The text of `path`, a `what` ("experiment spec", ...); SpecError when it is missing,
    not a file, larger than MAX_INPUT_BYTES or not text in `encoding`."""
    shown = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{shown}: no such file, expected the {what}") from None
    except IsADirectoryError:
        raise SpecError(f"{shown}: is a directory, expected the {what}") from None
    except OSError as err:
        raise SpecError(f"{shown}: cannot read the {what} ({err.strerror or err})") from None
    if len(data) > MAX_INPUT_BYTES:
        raise SpecError(f"{shown}: larger than {MAX_INPUT_BYTES // 1024} KiB, the limit for the {what}",
                        hint=f"is {shown} really the {what}?")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise SpecError(f"{shown}: not UTF-8 text ({err.reason} at byte {err.start})") from None

