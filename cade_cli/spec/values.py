"""Readers for spec values with a format of their own: walltimes, memory, signals and
environment variables (Determined's list and mapping forms)."""

from __future__ import annotations

import re
from typing import Any

from cade_cli.spec.reader import MapReader, is_int, is_number
from cade_cli.spec.yamlpos import Node, describe

_SIGNALS = ("USR1", "USR2", "TERM", "INT", "HUP", "QUIT", "ALRM", "XCPU")
_MEMORY = re.compile(r"[0-9]+(?:[KMGTP]i?B?)?", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DAYS = re.compile(r"([0-9]{1,4})-([0-9]{1,2})(?::([0-9]{1,2}))?(?::([0-9]{1,2}))?")
_CLOCK = re.compile(r"([0-9]{1,7})(?::([0-9]{1,2}))?(?::([0-9]{1,2}))?")


def parse_walltime(value: Any) -> int | None:
    """Slurm's time forms -> seconds: minutes as an integer, "M", "M:S", "H:M:S", "D-H",
    "D-H:M", "D-H:M:S". None when `value` is none of these (or not positive)."""
    if is_int(value):
        return int(value) * 60 if value > 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _DAYS.fullmatch(text)
    if match:  # D-H, D-H:M, D-H:M:S
        days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
        has_hours = has_days = True
    else:
        match = _CLOCK.fullmatch(text)
        if not match:
            return None
        fields = [int(group) for group in match.groups() if group is not None]
        days, has_days, has_hours = 0, False, len(fields) == 3
        if has_hours:  # H:M:S
            hours, minutes, seconds = fields
        else:  # M or M:S
            hours, minutes, seconds = 0, fields[0], (fields[1] if len(fields) == 2 else 0)
    if (has_days and hours >= 24) or (has_hours and minutes >= 60) or seconds >= 60:
        return None
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return total if total > 0 else None


def read_walltime(section: MapReader) -> int | None:
    expected = 'a walltime: minutes as an integer, or "HH:MM:SS", "MM:SS", "D-HH:MM:SS"'
    node = section.node("time", expected)
    if node is None:
        return None
    seconds = parse_walltime(node.value)
    if seconds is None:
        section.bad(node, "time", expected)
    return seconds


def read_memory(section: MapReader) -> str | None:
    expected = 'an amount of memory such as "16G" or "64GB"'
    node = section.node("mem_per_node", expected)
    if node is None:
        return None
    text = str(node.value).strip() if is_int(node.value) or isinstance(node.value, str) else ""
    if not _MEMORY.fullmatch(text):
        section.bad(node, "mem_per_node", expected)
        return None
    return text


def read_signal(section: MapReader) -> str:
    expected = "a signal name (" + ", ".join(_SIGNALS) + ")"
    node = section.node("preempt_signal", expected)
    if node is None:
        return "USR1"
    name = node.value.upper().removeprefix("SIG") if isinstance(node.value, str) else ""
    if name not in _SIGNALS:
        section.bad(node, "preempt_signal", expected)
        return "USR1"
    return name


def read_environment(section: MapReader, slot_type: str) -> tuple[tuple[str, str], ...]:
    expected = 'a list of "NAME=value" strings or a mapping of names to values'
    node = section.node("environment_variables", expected)
    if node is None:
        return ()
    path = section.key_path("environment_variables")
    if isinstance(node.value, dict) and node.value and set(node.value) <= {"cpu", "cuda", "rocm"} and all(
            isinstance(item.value, list) for item in node.value.values()):
        # Determined's per-device form {cpu: [...], cuda: [...]}: take the list for our slots.
        chosen = node.value.get("cuda" if slot_type == "gpu" else "cpu")
        return _env_pairs(chosen, path, section) if chosen is not None else ()
    if isinstance(node.value, (dict, list)):
        return _env_pairs(node, path, section)
    section.bad(node, "environment_variables", expected)
    return ()


def _env_pairs(node: Node, path: str, section: MapReader) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str, Node]] = []
    if isinstance(node.value, dict):
        for name, item in node.value.items():
            if isinstance(item.value, (dict, list)):
                section.problems.add(item.loc, f"{path}.{name}", f"expected a plain value, found {describe(item)}")
            else:
                pairs.append((name, _env_text(item.value), item))
    else:
        for index, item in enumerate(node.value):
            if isinstance(item.value, str) and "=" in item.value:
                name, _, value = item.value.partition("=")
                pairs.append((name, value, item))
            else:
                section.problems.add(item.loc, f"{path}[{index}]", f'expected "NAME=value", found {describe(item)}')
    seen: set[str] = set()
    for name, _, item in pairs:
        if not _ENV_NAME.fullmatch(name):
            section.problems.add(item.loc, path, f"expected a variable name (letters, digits, _), found {name!r}")
        elif name.startswith("CADE_"):
            section.problems.add(item.loc, path, f"expected a name not starting with CADE_ (cade sets those), "
                                                 f"found {name!r}")
        elif name in seen:
            section.problems.add(item.loc, path, f"expected each variable once, found {name!r} again")
        seen.add(name)
    return tuple((name, value) for name, value, _ in pairs)


def _env_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if is_number(value) or isinstance(value, str) else ""
