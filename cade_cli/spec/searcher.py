"""The `searcher` section -> the keyword arguments of `SearcherSpec` (Determined's keys).

Each searcher accepts only its own keys; a key that belongs to another searcher is reported
as such, so a half-edited config (say `num_rungs` left under `random`) does not pass silently.
"""

from __future__ import annotations

from typing import Any

from cade_cli.spec.determined import determined_keys, removed_step_keys
from cade_cli.spec.reader import MapReader, is_int, suggest
from cade_cli.spec.sampler import read_sampler
from cade_cli.spec.searcher_config import (
    CONFIG_TYPES,
    AdaptiveAshaConfig,
    AshaConfig,
    FixedLengthConfig,
    HalvingConfig,
    PbtConfig,
    SearcherConfig,
)
from cade_cli.spec.yamlpos import describe

SEARCHER_NAMES = tuple(CONFIG_TYPES)
LENGTH_UNITS = ("batches", "records", "epochs")
ASHA_MODES = ("aggressive", "standard", "conservative")
BRACKET_POLICIES = ("fixed", "learned")

_COMMON = ("name", "metric", "smaller_is_better", "max_concurrent_trials", "sampler")
_ASHA_LENGTH = ("max_length", "max_time", "time_metric")
_OWN_KEYS: dict[str, tuple[str, ...]] = {
    "single": ("max_length",),
    "random": ("max_trials", "max_length"),
    "grid": ("max_length",),
    "async_halving": ("num_rungs", "max_trials", "divisor", "stop_once") + _ASHA_LENGTH,
    "adaptive_asha": ("max_trials", "mode", "divisor", "max_rungs", "bracket_rungs", "stop_once",
                      "bracket_policy") + _ASHA_LENGTH,
    "pbt": ("population_size", "num_rounds", "length_per_round", "replace_function", "explore_function"),
}
_LENGTH_EXPECTED = "an integer >= 1 or a mapping like {batches: N} (units: batches, records, epochs)"


def read_searcher(reader: MapReader) -> dict[str, Any]:
    """Validate the searcher mapping; return SearcherSpec keyword arguments."""
    name = reader.choice("name", SEARCHER_NAMES, default="", required=True)
    _reject_foreign_keys(reader, name)
    result: dict[str, Any] = {
        "name": name or "single",
        "metric": reader.string("metric", required=True, why=" (the validation metric to compare trials by)",
                                one_line=True),
        "smaller_is_better": reader.boolean("smaller_is_better", True),
        "max_concurrent_trials": reader.integer("max_concurrent_trials", 16, minimum=0),
        "sampler": read_sampler(reader, name),
    }
    result.update(_own_keys(reader, CONFIG_TYPES.get(name)))
    return result


def _own_keys(reader: MapReader, kind: type[SearcherConfig] | None) -> dict[str, Any]:
    """The keys of the searcher whose config type is `kind` (None: an unknown searcher)."""
    if kind is None:
        return {}
    needs = f" (the {kind.name!r} searcher needs it)"
    result: dict[str, Any] = {}
    if "max_trials" in kind.required:
        result["max_trials"] = reader.optional_integer("max_trials", minimum=1, required=True, why=needs)
    if issubclass(kind, FixedLengthConfig):
        # Optional since Determined 0.38: absent, each trial's own code decides its length.
        result["max_length"], result["length_unit"] = read_length(
            reader, "max_length", required=False,
            why=" (optional: without it the trial decides its length)")
    if issubclass(kind, HalvingConfig):
        result.update(_asha_common(reader, kind.name))
    if issubclass(kind, AshaConfig):
        result["num_rungs"] = reader.optional_integer("num_rungs", minimum=1, required=True, why=needs)
    if issubclass(kind, AdaptiveAshaConfig):
        result.update(_adaptive(reader))
    if issubclass(kind, PbtConfig):
        result.update(_pbt(reader, needs))
    return result


def _reject_foreign_keys(reader: MapReader, name: str) -> None:
    if not name:  # unknown searcher: only flag keys no searcher knows
        every = set(_COMMON).union(*_OWN_KEYS.values())
        reader.reject_unknown(every)
        return
    own = set(_COMMON) | set(_OWN_KEYS[name])
    explained = removed_step_keys("searcher")
    for keys in _OWN_KEYS.values():
        for key in keys:
            if key not in own:
                users = [n for n, ks in _OWN_KEYS.items() if key in ks]
                explained[key] = f"not used by the {name!r} searcher (a key of: {', '.join(users)})"
    # Determined-only keys are removed before this; listed, a misspelling of one gets "did you mean".
    reader.reject_unknown(own | (set(determined_keys("searcher")) - set(explained)), explained)


def read_length(reader: MapReader, key: str, *, required: bool, why: str = "") -> tuple[int | None, str]:
    """`N` or `{batches|records|epochs: N}` -> (N, unit); the unit defaults to batches."""
    node = reader.node(key, _LENGTH_EXPECTED, required=required, why=why)
    if node is None:
        return None, "batches"
    if is_int(node.value) and node.value >= 1:
        return int(node.value), "batches"
    if not isinstance(node.value, dict) or len(node.value) != 1:
        reader.bad(node, key, _LENGTH_EXPECTED, why)
        return None, "batches"
    unit, amount = next(iter(node.value.items()))
    path = reader.key_path(key)
    if unit not in LENGTH_UNITS:
        reader.problems.add(amount.key_where, f"{path}.{unit}",
                            f"expected a length unit (batches, records, epochs), found {unit!r}"
                            f"{suggest(unit, LENGTH_UNITS, listing=False)}")
        return None, "batches"
    if not is_int(amount.value) or amount.value < 1:
        reader.problems.add(amount.loc, f"{path}.{unit}", f"expected an integer >= 1, found {describe(amount)}")
        return None, unit
    return int(amount.value), unit


def _asha_common(reader: MapReader, name: str) -> dict[str, Any]:
    """max_length, or max_time + time_metric (lengths read from a reported metric)."""
    max_length, unit = read_length(reader, "max_length", required=False)
    max_time = reader.optional_integer("max_time", minimum=1)
    time_metric = reader.optional_string("time_metric")
    length_given = reader.given("max_length")
    if length_given and (reader.given("max_time") or reader.given("time_metric")):
        other = "max_time" if reader.given("max_time") else "time_metric"
        reader.problems.add(reader.entries[other].key_where, reader.key_path(other),
                            "expected either max_length or max_time with time_metric, "
                            f"found both max_length and {other}")
    elif not length_given:
        if not reader.given("max_time") and not reader.given("time_metric"):
            reader.missing("max_length", _LENGTH_EXPECTED, f" (the {name!r} searcher needs max_length, "
                                                           f"or max_time with time_metric)")
        elif not reader.given("max_time"):
            reader.missing("max_time", "an integer >= 1", " (time_metric needs it)")
        elif not reader.given("time_metric"):
            reader.missing("time_metric", "the name of the metric that measures length", " (max_time needs it)")
    return {
        "max_length": max_length if length_given else max_time,
        # With time_metric, lengths are counted in that metric: its name is the unit.
        "length_unit": unit if length_given or not time_metric else time_metric,
        "time_metric": None if length_given else time_metric,
        "divisor": reader.integer("divisor", 4, minimum=2),
        "stop_once": reader.boolean("stop_once", False),
    }


def _adaptive(reader: MapReader) -> dict[str, Any]:
    result: dict[str, Any] = {
        "mode": reader.choice("mode", ASHA_MODES, "standard"),
        "max_rungs": reader.integer("max_rungs", 5, minimum=1),
        "bracket_rungs": None,
        # A cade extension (searchers/bracket_policy.py): `learned` moves trials between brackets.
        "bracket_policy": reader.choice("bracket_policy", BRACKET_POLICIES, "fixed"),
    }
    expected = "a non-empty list of integers >= 1 (rungs per bracket)"
    node = reader.node("bracket_rungs", expected)
    if node is None:
        return result
    if not isinstance(node.value, list) or not node.value:
        reader.bad(node, "bracket_rungs", expected)
        return result
    bad = [(index, item) for index, item in enumerate(node.value) if not (is_int(item.value) and item.value >= 1)]
    for index, item in bad:
        reader.problems.add(item.loc, f"{reader.key_path('bracket_rungs')}[{index}]",
                            f"expected an integer >= 1, found {describe(item)}")
    if not bad:
        result["bracket_rungs"] = tuple(int(item.value) for item in node.value)
    return result


def _pbt(reader: MapReader, needs: str) -> dict[str, Any]:
    length, unit = read_length(reader, "length_per_round", required=True, why=needs)
    replace = reader.section("replace_function")
    replace.reject_unknown(("truncate_fraction",))
    explore = reader.section("explore_function")
    explore.reject_unknown(("resample_probability", "perturb_factor"))
    return {
        "population_size": reader.optional_integer("population_size", minimum=1, required=True, why=needs),
        "num_rounds": reader.optional_integer("num_rounds", minimum=1, required=True, why=needs),
        "length_per_round": length,
        "length_unit": unit,
        "truncate_fraction": replace.number("truncate_fraction", 0.2, minimum=0.0, maximum=0.5),
        "resample_probability": explore.number("resample_probability", 0.2, minimum=0.0, maximum=1.0),
        "perturb_factor": explore.number("perturb_factor", 0.2, minimum=0.0, maximum=1.0),
    }
