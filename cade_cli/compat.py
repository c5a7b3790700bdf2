"""Forms of newer standard-library names that also run on Python 3.10 (setup.cfg's minimum).

`tests/hostile/test_input_python_version.py` checks statically that nothing newer is used.
"""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """`enum.StrEnum` (3.11): members are strings and format as their value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
