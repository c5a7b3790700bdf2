"""Site and user configuration: `/etc/cade/config.yaml` (or `CADE_SITE_CONFIG`), then
`~/.config/cade/config.yaml` (or `CADE_CONFIG`), then `CADE_*` environment variables.

Settings describe the machine cade runs on, not an experiment: which scheduler to use, how
often to poll it, how many jobs an experiment may keep queued, how long a stopped trial gets
to checkpoint before it is canceled, where the site's job templates live, how many slots the
local backend offers, whether trials are packed into shared allocations by default, and
whether new segments go to the scheduler as job arrays by default.

The site file sets defaults like the user's file, and may add a `limits:` section that no
later source can go past: a floor on the cluster poll interval and a ceiling on queued jobs.
A value past a limit is brought back to it (a user's file stays valid at every site).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from cade_cli.errors import SpecError
from cade_cli.spec.configfiles import SITE_CONFIG, config_path, site_config_path
from cade_cli.spec.files import read_capped
from cade_cli.spec.reader import suggest
from cade_cli.spec.yamlpos import Node, Problems, compose

SCHEDULERS = ("auto", "local", "slurm", "pbs")
CLUSTER_POLL_INTERVAL = 30.0
LOCAL_POLL_INTERVAL = 2.0
LIMITS_KEY = "limits"


@dataclass(frozen=True)
class Settings:
    scheduler: str = "auto"                # auto | local | slurm | pbs
    poll_interval: float | None = None     # seconds between scheduler polls; None: by backend
    max_queued_jobs: int = 32              # queued (not yet running) jobs per experiment
    count_user_jobs: bool = False          # the user's other queued jobs count toward it
    stop_grace: float = 120.0              # seconds a stopped trial gets before it is canceled
    templates: str | None = None           # a site template directory
    local_slots: int | None = None         # local backend slots; None: the CPU count
    pack: bool = False                     # pack trials into shared allocations by default
    job_arrays: bool = False               # submit a pass's new segments as job arrays by default
    max_array_size: int | None = None      # elements per array; None: ask the scheduler
    min_poll_interval: float = 0.0         # site floor on a cluster scheduler's poll interval
    max_queued_jobs_limit: int | None = None  # site ceiling on max_queued_jobs
    pause_after_failed_trials: int = 3     # errored trials, none reporting, that pause (0: never)
    source: str = "<defaults>"             # where the settings came from (for messages)

    def poll_interval_for(self, backend: str) -> float:
        """The minimum time between two polls of `backend`'s scheduler (the site's floor
        holds for cluster schedulers; the local backend asks no shared service)."""
        if self.poll_interval is not None:
            chosen = self.poll_interval
        else:
            chosen = LOCAL_POLL_INTERVAL if backend == "local" else CLUSTER_POLL_INTERVAL
        return chosen if backend == "local" else max(chosen, self.min_poll_interval)

    def with_overrides(self, **changes: Any) -> Settings:
        return within_limits(replace(self, **{k: v for k, v in changes.items() if v is not None}))


def within_limits(settings: Settings) -> Settings:
    """`settings` with max_queued_jobs brought under the site's ceiling (the poll floor is
    applied by poll_interval_for, which also covers the per-backend default)."""
    ceiling = settings.max_queued_jobs_limit
    if ceiling is not None and settings.max_queued_jobs > ceiling:
        return replace(settings, max_queued_jobs=ceiling)
    return settings


def _scheduler(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in SCHEDULERS:
        raise ValueError(f"must be one of {', '.join(SCHEDULERS)}, got {value!r}")
    return text


def _converted(value: Any, convert: Callable[[Any], Any], expected: str) -> Any:
    """`convert(value)`; ValueError(`expected`) for a boolean or what does not convert."""
    if isinstance(value, bool):
        raise ValueError(expected)  # noqa: TRY004
    try:
        return convert(value)
    except (TypeError, ValueError):
        raise ValueError(expected) from None


def _non_negative_float(value: Any) -> float:
    expected = f"must be a number >= 0, got {value!r}"
    number: float = _converted(value, float, expected)
    if not number >= 0:  # also rejects NaN
        raise ValueError(expected)
    return number


def _whole_number(minimum: int) -> Callable[[Any], int]:
    """A parser of whole numbers >= `minimum`."""
    def parse(value: Any) -> int:
        expected = f"must be a whole number >= {minimum}, got {value!r}"
        number: int = _converted(value, lambda v: int(str(v).strip()), expected)
        if number < minimum:
            raise ValueError(expected)
        return number
    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _directory(value: Any) -> str:
    text = os.path.expanduser(str(value).strip())
    if not text:
        raise ValueError("must be a directory path")
    # A typo would otherwise fall back to the built-in templates without a word.
    if not os.path.isdir(text):
        what = "is not a directory" if os.path.exists(text) else "does not exist"
        raise ValueError(f"must be an existing directory; {text!r} {what}")
    return text


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "scheduler": _scheduler,
    "poll_interval": _non_negative_float,
    "max_queued_jobs": _positive_int,
    "stop_grace": _non_negative_float,
    "templates": _directory,
    "local_slots": _positive_int,
    "pack": _boolean,
    "job_arrays": _boolean,
    "max_array_size": _positive_int,
    "count_user_jobs": _boolean,
    "pause_after_failed_trials": _non_negative_int,
}
# The site file's `limits:` section: key there -> (Settings field, parser).
_LIMITS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "min_poll_interval": ("min_poll_interval", _non_negative_float),
    "max_queued_jobs": ("max_queued_jobs_limit", _positive_int),
}


def _read_config_file(path: Path, variable: str, named: bool) -> dict[str, Node]:
    """The file's top-level keys as located nodes; `named`: `variable` names the file, so it
    must be there (the default files are optional)."""
    if not named and not path.exists():
        return {}
    try:
        text = read_capped(path, "cade configuration")
    except SpecError as err:
        if named:
            err.hint = f"{variable} names this file; fix the path or unset {variable}"
        raise
    problems = Problems()
    root = compose(text, str(path), problems)
    problems.raise_if_any()
    if root is None:
        return {}
    if not isinstance(root.value, dict):
        raise SpecError(f"{root.loc.where}: the configuration must be a mapping of keys to values")
    return {key.replace("-", "_"): node for key, node in root.value.items()}


def _parse(parsers: Mapping[str, Callable[[Any], Any]], key: str, value: Any, where: str,
           path: str = "") -> Any:
    """`value` parsed for `key`; `where` is `file:line` or the variable, `path` the key path."""
    shown = path or key
    if key not in parsers:
        known = ", ".join(sorted(parsers))
        raise SpecError(f"{where}: unknown setting {shown!r}{suggest(key, parsers, listing=False)}",
                        hint=f"known settings: {known}")
    try:
        return parsers[key](value)
    except (TypeError, ValueError) as err:
        detail = str(err) if str(err).startswith("must") else f"invalid value {value!r}"
        raise SpecError(f"{where}: {shown} {detail}") from None


def _file_values(path: Path, variable: str, named: bool, site: bool,
                 found: list[SpecError]) -> dict[str, Any]:
    """Settings fields -> values from one file; only the site file may hold `limits:`.
    A bad value goes to `found` and the file's other keys are still read."""
    values: dict[str, Any] = {}
    for key, node in _read_config_file(path, variable, named).items():
        where = node.key_where.where
        try:
            if key == LIMITS_KEY:
                if not site:
                    raise SpecError(f"{where}: {LIMITS_KEY} can only be set in the site file",
                                    hint=f"the site file is {SITE_CONFIG} (or $CADE_SITE_CONFIG)")
                values.update(_limit_values(node, found))
            elif node.value is not None:
                values[key] = _parse(_PARSERS, key, node.value, where)
        except SpecError as err:
            found.append(err)
    return values


def _limit_values(section: Node, found: list[SpecError]) -> dict[str, Any]:
    if section.value is None:
        return {}
    if not isinstance(section.value, dict):
        raise SpecError(f"{section.key_where.where}: {LIMITS_KEY} must be a mapping of limits")
    parsers = {key: parser for key, (_, parser) in _LIMITS.items()}
    values: dict[str, Any] = {}
    for key, node in section.value.items():
        key = key.replace("-", "_")
        if node.value is not None:
            try:
                parsed = _parse(parsers, key, node.value, node.key_where.where,
                                f"{LIMITS_KEY}.{key}")
            except SpecError as err:
                found.append(err)
                continue
            values[_LIMITS[key][0]] = parsed
    return values


def _raise_all(found: list[SpecError]) -> None:
    """Every bad setting at once, one located line each (their distinct hints joined)."""
    if found:
        hints = list(dict.fromkeys(err.hint for err in found if err.hint))
        raise SpecError("\n".join(err.message for err in found), hint="; ".join(hints) or None)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The site file, then the user's file, then the `CADE_*` environment; site limits last."""
    env = os.environ if environ is None else environ
    site, user = site_config_path(env), config_path(env)
    found: list[SpecError] = []
    values = _file_values(site, "CADE_SITE_CONFIG", bool(env.get("CADE_SITE_CONFIG")),
                          site=True, found=found)
    limits = {field: values.pop(field) for field, _ in _LIMITS.values() if field in values}
    values.update(_file_values(user, "CADE_CONFIG", bool(env.get("CADE_CONFIG")), site=False,
                               found=found))
    for key in _PARSERS:
        variable = f"CADE_{key.upper()}"
        if env.get(variable, "") != "":
            try:
                values[key] = _parse(_PARSERS, key, env[variable],
                                     f"environment variable {variable}")
            except SpecError as err:
                found.append(err)
    _raise_all(found)
    known = {f.name for f in fields(Settings)}
    return within_limits(Settings(source=str(user), **limits,
                                  **{k: v for k, v in values.items() if k in known}))
