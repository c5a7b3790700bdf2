"""User and site configuration: `~/.config/cade/config.yaml` (or `CADE_CONFIG`), then `CADE_*`.

Settings describe the machine cade runs on, not an experiment: which scheduler to use, how
often to poll it, how many jobs an experiment may keep queued, how long a stopped trial gets
to checkpoint before it is canceled, where the site's job templates live, and how many slots
the local backend offers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from cade_cli.errors import SpecError
from cade_cli.spec.files import read_capped

SCHEDULERS = ("auto", "local", "slurm", "pbs")
CLUSTER_POLL_INTERVAL = 30.0
LOCAL_POLL_INTERVAL = 2.0


@dataclass(frozen=True)
class Settings:
    scheduler: str = "auto"                # auto | local | slurm | pbs
    poll_interval: float | None = None     # seconds between scheduler polls; None: by backend
    max_queued_jobs: int = 32              # queued (not yet running) jobs per experiment
    stop_grace: float = 120.0              # seconds a stopped trial gets before it is canceled
    templates: str | None = None           # a site template directory
    local_slots: int | None = None         # local backend slots; None: the CPU count
    source: str = "<defaults>"             # where the settings came from (for messages)

    def poll_interval_for(self, backend: str) -> float:
        """The minimum time between two polls of `backend`'s scheduler."""
        if self.poll_interval is not None:
            return self.poll_interval
        return LOCAL_POLL_INTERVAL if backend == "local" else CLUSTER_POLL_INTERVAL

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _scheduler(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in SCHEDULERS:
        raise ValueError(f"must be one of {', '.join(SCHEDULERS)}, got {value!r}")
    return text


def _non_negative_float(value: Any) -> float:
    number = float(value)
    if not number >= 0:  # also rejects NaN
        raise ValueError(f"must be a number >= 0, got {value!r}")
    return number


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number >= 1, got {value!r}")  # noqa: TRY004
    number = int(str(value).strip())
    if number < 1:
        raise ValueError(f"must be a whole number >= 1, got {value!r}")
    return number


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
}


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("CADE_CONFIG"):
        return Path(env["CADE_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "cade" / "config.yaml"


def _read_config_file(path: Path, named: bool) -> dict[str, Any]:
    """The file's settings; `named`: CADE_CONFIG names it, so it must be there (the default
    file is optional)."""
    if not named and not path.exists():
        return {}
    try:
        text = read_capped(path, "cade configuration")
    except SpecError as err:
        if named:
            err.hint = "CADE_CONFIG names this file; fix the path or unset CADE_CONFIG"
        raise
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}",
                        hint="fix the file or point CADE_CONFIG elsewhere") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the configuration must be a mapping of keys to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _parse(key: str, value: Any, where: str) -> Any:
    if key not in _PARSERS:
        known = ", ".join(sorted(_PARSERS))
        raise SpecError(f"{where}: unknown setting {key!r}", hint=f"known settings: {known}")
    try:
        return _PARSERS[key](value)
    except (TypeError, ValueError) as err:
        detail = str(err) if str(err).startswith("must") else f"invalid value {value!r}"
        raise SpecError(f"{where}: {key} {detail}") from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The configuration file's values, then the `CADE_*` environment overrides."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    values: dict[str, Any] = {}
    for key, raw in _read_config_file(path, named=bool(env.get("CADE_CONFIG"))).items():
        if raw is not None:
            values[key] = _parse(key, raw, str(path))
    for key in _PARSERS:
        variable = f"CADE_{key.upper()}"
        if env.get(variable, "") != "":
            values[key] = _parse(key, env[variable], f"environment variable {variable}")
    known = {f.name for f in fields(Settings)}
    return Settings(source=str(path), **{k: v for k, v in values.items() if k in known})
