"""The error a Determined call cade does not offer raises: it names the call and the way out."""

from __future__ import annotations

from typing import NoReturn

from cade_cli.errors import CadeError


class UnsupportedCall(CadeError):
    """A Determined API call with no meaning under cade (exit code 2: change the script)."""

    exit_code = 2

    def __str__(self) -> str:
        # A training script shows only str(error) in its traceback: the way out belongs there.
        return f"{self.message}; {self.hint}" if self.hint else self.message


def unsupported(call: str, instead: str) -> NoReturn:
    raise UnsupportedCall(
        f"{call} is not supported under cade",
        hint=f"{instead} (see docs/determined-core.md)",
    )
