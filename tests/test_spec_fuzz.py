"""Any input gives a spec or a SpecError: never another exception, never a traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cade_cli.errors import SpecError
from cade_cli.spec.experiment import (
    ExperimentSpec,
    load_spec,
    parse_spec,
    spec_from_raw,
)

SPECS = Path(__file__).parent / "data" / "specs"
FIXTURES = {path.stem: path.read_text() for path in sorted(SPECS.glob("*.yaml"))}
RAWS = {name: load_spec(SPECS / f"{name}.yaml").raw for name in FIXTURES}

# Names the loader knows, so random documents reach past the unknown-key checks.
KNOWN_KEYS = [
    "name", "description", "entrypoint", "hyperparameters", "searcher", "resources", "max_restarts",
    "checkpoint_storage", "reproducibility", "environment", "slurm", "pbs", "metric", "max_trials",
    "max_length", "num_rungs", "divisor", "mode", "bracket_rungs", "population_size", "num_rounds",
    "length_per_round", "replace_function", "explore_function", "type", "minval", "maxval", "count",
    "base", "vals", "val", "batches", "epochs", "time", "slots_per_trial", "slots_per_node",
    "environment_variables", "sbatch_args", "max_time", "time_metric", "cpu", "cuda",
]
SEARCHERS = ["single", "grid", "random", "async_halving", "adaptive_asha", "pbt"]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(SEARCHERS + ["int", "double", "log", "categorical", "const", "1:30:00", "A=1", "16G"]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=30,
)


def parses_or_spec_error(text: str, overrides: tuple[str, ...] = ()) -> ExperimentSpec | None:
    """The spec, or None after a SpecError that names its source; anything else fails."""
    try:
        return parse_spec(text, "fuzz.yaml", overrides)
    except SpecError as err:
        sources = ("fuzz.yaml", "--config") if overrides else ("fuzz.yaml",)
        assert any(source in str(err) for source in sources), f"no source named: {err}"
        assert err.exit_code == 2
        return None


def round_trips(spec: ExperimentSpec | None) -> bool:
    """An accepted spec is rebuilt the same from the raw form the ledger stores."""
    if spec is None:
        return True
    rebuilt = spec_from_raw(spec.raw)
    return (rebuilt.searcher, rebuilt.hyperparameters) == (spec.searcher, spec.hyperparameters)


@FUZZ
@given(documents)
def test_random_documents(document: Any) -> None:
    assert round_trips(parses_or_spec_error(yaml.safe_dump(document)))


@FUZZ
@given(st.dictionaries(st.sampled_from(KNOWN_KEYS[:12]), documents, max_size=8))
def test_random_documents_with_spec_keys(document: dict[str, Any]) -> None:
    assert round_trips(parses_or_spec_error(yaml.safe_dump(document)))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and list indexes) inside a plain tree, the root excluded."""
    found: list[tuple[Any, ...]] = []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in children:
        found.append(prefix + (key,))
        found.extend(_paths(child, prefix + (key,)))
    return found


def _mutate(raw: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    mutated = copy.deepcopy(raw)
    path = data.draw(st.sampled_from(_paths(mutated)))
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = data.draw(st.sampled_from(["delete", "retype", "insert"]))
    if action == "delete":
        del parent[last]
    elif action == "retype":
        parent[last] = data.draw(documents)
    else:
        target = parent[last] if isinstance(parent[last], dict) else parent
        if isinstance(target, dict):
            target[data.draw(keys)] = data.draw(scalars)
        else:
            target.append(data.draw(scalars))
    return mutated


@FUZZ
@given(st.sampled_from(sorted(RAWS)), st.data())
def test_mutated_valid_specs(name: str, data: st.DataObject) -> None:
    mutated = _mutate(RAWS[name], data)
    spec = parses_or_spec_error(yaml.safe_dump(mutated))
    try:
        rebuilt = spec_from_raw(mutated)
    except SpecError:
        assert spec is None, "the same document must be judged the same from text and from raw"
        return
    assert spec is not None and rebuilt.searcher == spec.searcher and rebuilt.hyperparameters == spec.hyperparameters


@FUZZ
@given(st.sampled_from(sorted(FIXTURES)), st.data())
def test_corrupted_text(name: str, data: st.DataObject) -> None:
    text = FIXTURES[name]
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 8)))
    junk = data.draw(st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"\n\t #,?%@`\\x0aé\x00")), max_size=6))
    assert round_trips(parses_or_spec_error(text[:start] + junk + text[end:]))


@FUZZ
@given(st.sampled_from(sorted(FIXTURES)), st.lists(
    st.one_of(st.text(max_size=30), st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
        ["searcher.max_trials", "name", "resources.time", "hyperparameters.lr", "a..b", "searcher.name.x",
         "environment.environment_variables", "searcher"]), st.text(max_size=20))),
    max_size=3))
def test_random_overrides(name: str, overrides: list[str]) -> None:
    assert round_trips(parses_or_spec_error(FIXTURES[name], tuple(overrides)))


@FUZZ
@given(st.dictionaries(st.sampled_from(KNOWN_KEYS[:12]), documents, max_size=8))
def test_spec_from_raw_on_random_dicts(raw: dict[str, Any]) -> None:
    try:
        spec = spec_from_raw(raw)
    except SpecError as err:
        assert err.exit_code == 2 and str(err).strip()
        return
    assert round_trips(spec)
