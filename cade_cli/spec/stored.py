"""The normalised spec as versioned JSON: what the ledger keeps of an experiment's spec.

Pure. `to_json` runs at submit, on a spec that has just passed validation; `from_json`
rebuilds the frozen dataclasses field by field from their type hints, without the YAML
validators: a later release with a stricter check must not refuse an experiment that is
already running. A hyperparameter is tagged with its type (`_encode_hyperparameter`).

A format this version does not know is a LedgerError, never a guess.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from cade_cli.errors import LedgerError
from cade_cli.search.space import (
    Categorical,
    Const,
    Double,
    Hyperparameter,
    Int,
    Log,
    Nested,
)
from cade_cli.spec.experiment import ExperimentSpec, spec_from_raw

VERSION = 1
_HYPERPARAMETERS = {kind.__name__.lower(): kind for kind in (Const, Int, Double, Log, Categorical)}
_NOT_STORED = ("raw",)   # the YAML as parsed: the ledger keeps it in its own column


def to_json(spec: ExperimentSpec) -> dict[str, Any]:
    """A JSON-friendly form of `spec`, tagged with the format version."""
    fields = {f.name: _encode(getattr(spec, f.name)) for f in dataclasses.fields(spec)
              if f.name not in _NOT_STORED}
    return {"version": VERSION, "spec": fields}


def from_json(stored: dict[str, Any], raw: dict[str, Any] | None = None) -> ExperimentSpec:
    """Inverse of `to_json`; `raw` (the stored YAML) is carried along for display only."""
    version = stored.get("version") if isinstance(stored, dict) else None
    if version != VERSION:
        raise LedgerError(f"stored spec has version {version!r}; this cade reads version {VERSION}",
                          hint="the ledger was written by a different cade version; use that version")
    spec: ExperimentSpec = _decode(ExperimentSpec, stored["spec"])
    return dataclasses.replace(spec, raw=dict(raw or {}))


def restore(stored: dict[str, Any] | None, raw: dict[str, Any], spec_path: str) -> ExperimentSpec:
    """The spec of a recorded experiment: from its stored JSON, else (an experiment recorded
    before the ledger kept one) from its YAML, validated once more."""
    if stored is not None:
        return from_json(stored, raw)
    workdir = str(Path(spec_path).parent) if spec_path.startswith("/") else None
    return spec_from_raw(raw, spec_path or "<ledger>", workdir)


def _encode(value: Any) -> Any:
    if isinstance(value, Nested):
        return _encode_hyperparameter(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _encode(item) for key, item in value.items()}
    return value


def _decode(hint: Any, value: Any) -> Any:
    """`value` as the type `hint` names (dataclass, tuple, optional, space or plain JSON)."""
    if hint is Nested:
        return _decode_hyperparameter(value)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint) if f.init}
        build: Any = hint   # a dataclass type
        return build(**{name: _decode(hints[name], item) for name, item in value.items()
                        if name in known})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _decode_optional(args, value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item) for item in value)
        return tuple(_decode(arg, item) for arg, item in zip(args, value, strict=True))
    return value


def _decode_optional(args: tuple[Any, ...], value: Any) -> Any:
    if value is None:
        return None
    kinds = [arg for arg in args if arg is not type(None)]
    if len(kinds) != 1:
        raise LedgerError(f"stored spec: cannot tell which of {kinds} a value is")
    return _decode(kinds[0], value)


def _encode_hyperparameter(hp: Hyperparameter) -> dict[str, Any]:
    # A space's values are a union of types: the tag says which one to rebuild.
    if isinstance(hp, Nested):
        return {"type": "nested", "items": {name: _encode_hyperparameter(sub) for name, sub in hp.items}}
    return {"type": type(hp).__name__.lower(),
            **{f.name: _encode(getattr(hp, f.name)) for f in dataclasses.fields(hp)}}


def _decode_hyperparameter(value: dict[str, Any]) -> Hyperparameter:
    kind = value.get("type")
    if kind == "nested":
        items = value["items"]
        return Nested(tuple((name, _decode_hyperparameter(items[name])) for name in sorted(items)))
    if kind not in _HYPERPARAMETERS:
        raise LedgerError(f"stored spec: unknown hyperparameter type {kind!r}")
    hyperparameter: Hyperparameter = _decode(
        _HYPERPARAMETERS[kind], {key: item for key, item in value.items() if key != "type"})
    return hyperparameter
