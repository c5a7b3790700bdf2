"""The experiment config a PyTorchTrial sees, and the keys the harness acts on.

Inside a cade job the config is the experiment's YAML (validated at submit time; read here
without validating again, so that keys cade only passes through still reach the trial).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cade_cli.errors import SpecError
from cade_cli.spec.yamlpos import Problems, compose, to_plain

DEFAULT_SCHEDULING_UNIT = 100


def read_experiment_config(path: str | Path) -> dict[str, Any]:
    """The experiment YAML as plain data."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise SpecError(f"{path}: cannot read the experiment config ({err.strerror or err})") from None
    root = compose(text, str(path), Problems())
    if root is None or not isinstance(root.value, dict):
        return {}
    return dict(to_plain(root))


@dataclass(frozen=True)
class TrainingKeys:
    """The experiment-config keys that shape the loop."""

    records_per_epoch: int | None
    scheduling_unit: int
    min_validation_period: Any
    min_checkpoint_period: Any
    perform_initial_validation: bool
    searcher_max_length: Any

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> TrainingKeys:
        searcher = config.get("searcher") or {}
        records = config.get("records_per_epoch")
        return cls(
            records_per_epoch=int(records) if records else None,
            scheduling_unit=int(config.get("scheduling_unit") or DEFAULT_SCHEDULING_UNIT),
            min_validation_period=config.get("min_validation_period"),
            min_checkpoint_period=config.get("min_checkpoint_period"),
            perform_initial_validation=bool(config.get("perform_initial_validation", False)),
            searcher_max_length=searcher.get("max_length") if isinstance(searcher, Mapping) else None,
        )


def hparam_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """Constant hyperparameters of the config (plain values or `type: const`), for runs outside cade."""
    defaults: dict[str, Any] = {}
    for name, value in (config.get("hyperparameters") or {}).items():
        if isinstance(value, Mapping) and "type" in value:
            if value["type"] == "const":
                defaults[name] = value.get("val")
        else:
            defaults[name] = value
    return defaults
