"""Pure helpers shared by the Slurm and PBS directive builders and status readers.

Directive values end up in `#SBATCH` / `#PBS` lines of a script cade writes, so every value
is checked (no newline) and shell-quoted; user passthrough arguments are grouped into
(option, value) pairs so a conflict with a setting cade manages can be named precisely.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from cade_cli.errors import SpecError

STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"

_MEM_RE = re.compile(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class PassArg:
    """One user passthrough argument: `option` as typed (`--nodes`, `-N`), value or None."""

    option: str
    value: str | None

    def render(self) -> str:
        """One directive line's content, shell-quoted."""
        if self.value is None:
            return shlex.quote(self.option)
        if self.option.startswith("--"):
            return shlex.quote(f"{self.option}={self.value}")
        return f"{shlex.quote(self.option)} {shlex.quote(self.value)}"


def quoted(option: str, value: object) -> str:
    """`--option=value` (or `-o value` for a short option), quoted, refusing newlines."""
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise SpecError(f"{option}: value {text!r} contains a line break",
                        hint="names and paths used in batch directives must be single-line")
    if option.startswith("--"):
        return shlex.quote(f"{option}={text}")
    return f"{option} {shlex.quote(text)}"


def group_passthrough(args: tuple[str, ...] | list[str], key: str) -> list[PassArg]:
    """Pair options with their values: `--a=1`, `--a 1` (one item or two), `-N2`, `-N 2`.

    An item that does not start with `-` is the value of the option before it.
    """
    groups: list[PassArg] = []
    for raw in args:
        item = str(raw)
        if "\n" in item or "\r" in item or "\0" in item:
            raise SpecError(f"{key}: {item!r} contains a line break")
        if not item.startswith("-"):
            if not groups or groups[-1].value is not None:
                raise SpecError(f"{key}: {item!r} is not an option and follows no option",
                                hint="write options as '--name=value'")
            groups[-1] = PassArg(groups[-1].option, item)
            continue
        option, value = _split_item(item)
        groups.append(PassArg(option, value))
    return groups


def _split_item(item: str) -> tuple[str, str | None]:
    if item.startswith("--"):
        name, sep, value = item.partition("=")
        if sep:
            return name, value
        head, _, rest = item.partition(" ")
        return (head, rest.strip()) if rest.strip() else (item, None)
    if len(item) > 2 and item[2] != " ":
        return item[:2], item[2:]                     # -N2
    rest = item[2:].strip()
    return item[:2], (rest or None)                   # "-N 2" or "-N"


def canonical_option(option: str, short_names: dict[str, str]) -> str:
    """`-N` -> `nodes`, `--nodes` -> `nodes`."""
    if option.startswith("--"):
        return option[2:]
    return short_names.get(option, option)


def mem_megabytes(text: str, key: str = "resources.mem_per_node") -> int:
    """'16G', '16GB', '16gib', '512M', '2048' (MB) -> megabytes."""
    match = _MEM_RE.fullmatch(str(text))
    if not match:
        raise SpecError(f"{key}: {text!r} is not a memory size",
                        hint="use a number with an optional K, M, G or T suffix, e.g. 16G")
    number, unit = int(match.group(1)), match.group(2).lower()
    factor = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}[unit]
    megabytes = int(number * factor) if unit != "k" else max(1, -(-number // 1024))
    if megabytes <= 0:
        raise SpecError(f"{key}: {text!r} must be positive")
    return megabytes


def notice_seconds(notice: int, walltime: int | None) -> int:
    """Seconds of warning before the time limit, kept below the walltime itself.

    A notice as long as the walltime would fire at the start and end every segment at once.
    """
    if walltime is not None and notice >= walltime:
        return max(1, walltime // 2)
    return max(1, notice)
