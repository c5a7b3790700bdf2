"""The spec loader: Determined's keys and defaults, and messages that point at the mistake."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.errors import SpecError
from cade_cli.jobs.layout import trial_layout
from cade_cli.search.space import Categorical, Const, Double, Int, Log, Nested
from cade_cli.spec.experiment import (
    CheckpointStorageSpec,
    ExperimentSpec,
    ResourcesSpec,
    load_spec,
    parse_spec,
    parse_walltime,
    spec_from_raw,
)

SPECS = Path(__file__).parent / "data" / "specs"
FIXTURES = sorted(SPECS.glob("*.yaml"))

MINIMAL = """\
name: exp
entrypoint: python3 train.py
searcher:
  name: single
  metric: loss
  max_length: 100
"""


def parse(text: str, overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    return parse_spec(textwrap.dedent(text), "spec.yaml", overrides)


def errors(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse(text, overrides)
    assert caught.value.exit_code == 2
    return str(caught.value).splitlines()


def with_searcher(searcher: str, rest: str = "") -> str:
    """A minimal spec around an indented searcher block (and optional extra top-level text)."""
    block = textwrap.indent(textwrap.dedent(searcher).rstrip("\n") + "\n", "  ")
    return "name: exp\nentrypoint: python3 train.py\nsearcher:\n" + block + textwrap.dedent(rest)


# -- valid specs ----------------------------------------------------------------------------

def test_there_is_one_fixture_per_searcher() -> None:
    names = {load_spec(path).searcher.name for path in FIXTURES}
    assert names == {"single", "grid", "random", "async_halving", "adaptive_asha", "pbt"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_raw_round_trips_through_json(path: Path) -> None:
    spec = load_spec(path)
    stored = json.loads(json.dumps(spec.raw))
    rebuilt = spec_from_raw(stored, "<ledger>", workdir=spec.workdir)
    assert dataclasses.replace(rebuilt, source=spec.source) == spec
    assert rebuilt.raw == spec.raw


def test_defaults_are_determined_defaults() -> None:
    spec = parse(MINIMAL)
    assert spec.max_restarts == 5
    assert spec.checkpoint_storage == CheckpointStorageSpec(1, 1, 0)
    assert spec.resources == ResourcesSpec()
    assert spec.resources.slots_per_trial == 1
    assert spec.description == ""
    assert spec.experiment_seed is None
    assert spec.environment_variables == ()
    assert spec.hyperparameters == Nested(())
    searcher = spec.searcher
    assert (searcher.smaller_is_better, searcher.max_concurrent_trials, searcher.length_unit) == (True, 16, "batches")
    asha = parse(with_searcher("{name: adaptive_asha, metric: loss, max_trials: 9, max_length: 90}")).searcher
    assert (asha.divisor, asha.mode, asha.max_rungs, asha.stop_once, asha.bracket_rungs) == (4, "standard", 5, False,
                                                                                            None)
    pbt = parse(with_searcher("{name: pbt, metric: loss, population_size: 4, num_rounds: 2, "
                              "length_per_round: 10}")).searcher
    assert (pbt.truncate_fraction, pbt.resample_probability, pbt.perturb_factor) == (0.2, 0.2, 0.2)


def test_source_workdir_and_raw(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(MINIMAL)
    spec = load_spec(path)
    assert spec.source == str(path)
    assert spec.workdir == str(tmp_path)
    assert spec.raw["searcher"] == {"name": "single", "metric": "loss", "max_length": 100}
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert load_spec("exp.yaml").workdir == str(tmp_path.resolve())
    finally:
        os.chdir(cwd)


def test_entrypoint_forms() -> None:
    assert parse(MINIMAL.replace("python3 train.py", "python3 'my train.py' --lr 1")).entrypoint == (
        "python3", "my train.py", "--lr", "1")
    assert parse(MINIMAL.replace("python3 train.py", "[python3, train.py, --epochs, 3]")).entrypoint == (
        "python3", "train.py", "--epochs", "3")


def test_hyperparameter_forms() -> None:
    space = parse(MINIMAL + textwrap.dedent("""\
        hyperparameters:
          zeta: 1
          layers: [64, 32]
          opt:
            momentum: {type: double, minval: 0.5, maxval: 0.9, count: 3}
            lr: {type: log, minval: -4, maxval: -1, base: 10}
          act: {type: categorical, vals: [relu, [1, 2]]}
          width: {type: int, minval: 16, maxval: 64}
          fixed: {type: const, val: {a: 1}}
          lr2: 1e-4
        """)).hyperparameters
    assert space == Nested((
        ("act", Categorical(("relu", [1, 2]))),
        ("fixed", Const({"a": 1})),
        ("layers", Const([64, 32])),
        ("lr2", Const(0.0001)),
        ("opt", Nested((("lr", Log(-4.0, -1.0, 10.0)), ("momentum", Double(0.5, 0.9, 3))))),
        ("width", Int(16, 64)),
        ("zeta", Const(1)),
    ))


@pytest.mark.parametrize(("length", "expected"), [
    ("500", (500, "batches")),
    ("{batches: 7}", (7, "batches")),
    ("{records: 6400}", (6400, "records")),
    ("{epochs: 3}", (3, "epochs")),
])
def test_length_forms(length: str, expected: tuple[int, str]) -> None:
    searcher = parse(MINIMAL.replace("max_length: 100", f"max_length: {length}")).searcher
    assert (searcher.max_length, searcher.length_unit) == expected


def test_asha_time_metric_and_pbt_round_length() -> None:
    asha = parse(with_searcher("""\
        {name: async_halving, metric: loss, num_rungs: 3, max_trials: 9, max_time: 600, time_metric: seconds}
        """)).searcher
    assert (asha.max_length, asha.time_metric) == (600, "seconds")
    pbt = parse(with_searcher("""\
        {name: pbt, metric: loss, population_size: 4, num_rounds: 2, length_per_round: {epochs: 2}}
        """)).searcher
    assert (pbt.length_per_round, pbt.length_unit) == (2, "epochs")


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 5400), ("90", 5400), ("01:30:00", 5400), ("30:15", 1815), ("1-00:00:00", 86400),
    ("2-12", 216000), ("2-12:30", 217800), ("0:05:00", 300),
])
def test_walltime_forms(value: object, seconds: int) -> None:
    assert parse_walltime(value) == seconds


@pytest.mark.parametrize("value", [0, -5, "25:61", "1:61:00", "1-24:00", "soon", "", True, 1.5, "1:2:3:4"])
def test_walltime_rejects(value: object) -> None:
    assert parse_walltime(value) is None


def test_unquoted_clock_time_is_not_a_base_60_number() -> None:
    # YAML 1.1 reads 1:30:00 as 5400; taken as minutes that would be 90 hours.
    spec = parse(MINIMAL + "resources:\n  time: 1:30:00\n")
    assert spec.resources.time == 5400
    assert spec.raw["resources"]["time"] == "1:30:00"


def test_environment_variable_forms() -> None:
    as_list = parse(MINIMAL + "environment:\n  environment_variables: [A=1, B=x=y]\n")
    assert as_list.environment_variables == (("A", "1"), ("B", "x=y"))
    as_map = parse(MINIMAL + "environment:\n  environment_variables: {A: 1, B: true, C: null}\n")
    assert as_map.environment_variables == (("A", "1"), ("B", "true"), ("C", ""))
    per_device = MINIMAL + "environment:\n  environment_variables: {cpu: [A=cpu], cuda: [A=gpu]}\n"
    assert parse(per_device).environment_variables == (("A", "cpu"),)
    gpu = per_device + "resources: {slot_type: gpu}\n"
    assert parse(gpu).environment_variables == (("A", "gpu"),)


def test_scheduler_sections() -> None:
    spec = load_spec(SPECS / "grid.yaml")
    layout = trial_layout(spec, "slurm")
    assert layout.nodes == 2 and layout.tasks_per_node == 2
    assert spec.slurm.sbatch_args == ("--exclusive",) and spec.slurm.account == "proj-123"
    pbs = load_spec(SPECS / "async_halving.yaml").pbs
    assert pbs.pbsbatch_args == ("-l", "place=scatter") and pbs.account == "proj-9"


def test_merge_keys_and_anchors() -> None:
    spec = parse(MINIMAL + textwrap.dedent("""\
        hyperparameters:
          a: &range {type: double, minval: 0, maxval: 1}
          b:
            <<: *range
            maxval: 2
        """))
    assert spec.hyperparameters == Nested((("a", Double(0.0, 1.0)), ("b", Double(0.0, 2.0))))


# -- overrides ------------------------------------------------------------------------------

def test_overrides_set_values_and_create_maps() -> None:
    spec = parse(MINIMAL, ("searcher.max_length={epochs: 2}", "resources.slots_per_trial=4",
                           "hyperparameters.opt.lr=0.1", "description=from the command line"))
    assert (spec.searcher.max_length, spec.searcher.length_unit) == (2, "epochs")
    assert spec.resources.slots_per_trial == 4
    assert spec.hyperparameters == Nested((("opt", Nested((("lr", Const(0.1)),))),))
    assert spec.description == "from the command line"
    assert spec.raw["resources"] == {"slots_per_trial": 4}


def test_override_errors_name_config() -> None:
    assert errors(MINIMAL, ("searcher.max_length=ten", "nonsense", "name.x=1", "searcher.metric=[")) == [
        # Problems applying the overrides come first, then what validation finds in their values.
        "--config: expected KEY.PATH=VALUE (e.g. searcher.max_trials=8), found 'nonsense'",
        "--config: name: expected a mapping to set name.x in, found 'exp' (a string)",
        "--config: searcher.metric: expected a YAML value, found '[' (while parsing a flow node)",
        ("--config: searcher.max_length: expected an integer >= 1 or a mapping like {batches: N} "
        "(units: batches, records, epochs) (optional: without it the trial decides its length), found 'ten' (a string)"),
    ]


# -- error messages -------------------------------------------------------------------------

def test_unknown_key_suggests_the_closest() -> None:
    assert errors(with_searcher("name: random\nmetric: loss\nmax_trails: 4\nmax_length: 10\n")) == [
        "spec.yaml:3: searcher.max_trials: missing; expected an integer >= 1 (the 'random' searcher needs it)",
        "spec.yaml:6: searcher.max_trails: unknown key; did you mean 'max_trials'?",
    ]


def test_key_of_another_searcher_says_whose() -> None:
    assert errors(with_searcher("name: single\nmetric: loss\nmax_length: 10\nnum_rungs: 3\n")) == [
        "spec.yaml:7: searcher.num_rungs: unknown key: not used by the 'single' searcher (a key of: async_halving)",
    ]


def test_wrong_type() -> None:
    assert errors(MINIMAL + "max_restarts: often\n") == [
        "spec.yaml:7: max_restarts: expected an integer >= 0, found 'often' (a string)",
    ]


def test_missing_required() -> None:
    assert errors("name: exp\nsearcher: {name: single, max_length: 5}\n") == [
        "spec.yaml:1: entrypoint: missing; expected a command: a string or a list of strings (what each trial runs)",
        ("spec.yaml:2: searcher.metric: missing; expected a non-empty string "
        "(the validation metric to compare trials by)"),
    ]


def test_bad_bound_and_nested_hyperparameter_path() -> None:
    assert errors(MINIMAL + textwrap.dedent("""\
        hyperparameters:
          optimizer:
            lr: {type: log, minval: -1, maxval: -4, base: 0}
            kind: {type: categorial, vals: [a]}
            beta: {type: categorical, vals: []}
        """)) == [
        "spec.yaml:9: hyperparameters.optimizer.lr.minval: expected a value below maxval (-4), found -1 (an integer)",
        "spec.yaml:9: hyperparameters.optimizer.lr.base: expected a finite number > 0 other than 1, found 0 (an integer)",
        ("spec.yaml:10: hyperparameters.optimizer.kind.type: expected one of const, int, double, log, "
        "categorical, found 'categorial' (a string); did you mean 'categorical'?"),
        "spec.yaml:11: hyperparameters.optimizer.beta.vals: expected a non-empty list of values, found an empty list",
    ]


def test_grid_needs_count() -> None:
    text = with_searcher("{name: grid, metric: loss, max_length: 5}",
                         "hyperparameters:\n  lr: {type: double, minval: 0, maxval: 1}\n")
    assert errors(text) == [
        "spec.yaml:6: hyperparameters.lr.count: missing; expected an integer >= 1 (the grid searcher needs it)",
    ]


MISSPELT = [
    ("name: adaptve_asha\nmetric: loss\nmax_trials: 4\nmax_length: 10\n",
     "hyperparameters:\n  lr: {type: lgo, minval: -4, maxval: -1}\n",
     ("Error: {spec}:4: searcher.name: expected one of single, grid, random, async_halving, "
     "adaptive_asha, pbt, found 'adaptve_asha' (a string); did you mean 'adaptive_asha'?\n"
     "{spec}:9: hyperparameters.lr.type: expected one of const, int, double, log, categorical, "
     "found 'lgo' (a string); did you mean 'log'?\n")),
    (("name: adaptive_asha\nmetric: loss\nmax_trials: 4\nmax_length: 10\n"
     "mode: agressive\nbracket_policy: lerned\n"), "",
     ("Error: {spec}:8: searcher.mode: expected one of aggressive, standard, conservative, "
     "found 'agressive' (a string); did you mean 'aggressive'?\n"
     "{spec}:9: searcher.bracket_policy: expected one of fixed, learned, "
     "found 'lerned' (a string); did you mean 'learned'?\n")),
]


@pytest.mark.parametrize("searcher, hyperparameters, expected", MISSPELT)
def test_misspelt_names_suggest_the_closest_on_the_command_line(
        tmp_path: Path, searcher: str, hyperparameters: str, expected: str) -> None:
    """A searcher name, a hyperparameter type, a searcher's mode and bracket policy: the same
    near-miss hint."""
    spec = tmp_path / "exp.yaml"
    spec.write_text(with_searcher(searcher, hyperparameters))
    result = CliRunner().invoke(cli, ["preview", str(spec)])
    assert result.exit_code == 2
    assert result.output == expected.format(spec=spec)


def test_bad_length_form() -> None:
    assert errors(MINIMAL.replace("max_length: 100", "max_length: {steps: 100}")) == [
        "spec.yaml:6: searcher.max_length.steps: expected a length unit (batches, records, epochs), found 'steps'",
    ]
    assert errors(MINIMAL.replace("max_length: 100", "max_length: {epochs: 1, batches: 2}")) == [
        ("spec.yaml:6: searcher.max_length: expected an integer >= 1 or a mapping like {batches: N} "
        "(units: batches, records, epochs) (optional: without it the trial decides its length), found a mapping"),
    ]


def test_searcher_rules() -> None:
    assert errors(with_searcher("""\
        name: adaptive_asha
        metric: loss
        max_trials: 8
        time_metric: seconds
        mode: fast
        divisor: 1
        bracket_rungs: [2, x]
        """)) == [
        "spec.yaml:3: searcher.max_time: missing; expected an integer >= 1 (time_metric needs it)",
        "spec.yaml:8: searcher.mode: expected one of aggressive, standard, conservative, found 'fast' (a string)",
        "spec.yaml:9: searcher.divisor: expected an integer >= 2, found 1 (an integer)",
        "spec.yaml:10: searcher.bracket_rungs[1]: expected an integer >= 1, found 'x' (a string)",
    ]
    assert errors(with_searcher("""\
        {name: pbt, metric: loss, population_size: 4, num_rounds: 2, length_per_round: 5,
         replace_function: {truncate_fraction: 0.6}, explore_function: {perturb_factor: 2}}
        """)) == [
        ("spec.yaml:5: searcher.replace_function.truncate_fraction: expected a number from 0 to 0.5, "
        "found 0.6 (a number)"),
        "spec.yaml:5: searcher.explore_function.perturb_factor: expected a number from 0 to 1, found 2 (an integer)",
    ]


def test_unknown_searcher_name() -> None:
    assert errors(with_searcher("{name: asha, metric: loss}")) == [
        ("spec.yaml:4: searcher.name: expected one of single, grid, random, async_halving, adaptive_asha, pbt, "
        "found 'asha' (a string)"),
    ]


def test_yaml_syntax_error() -> None:
    assert errors("name: exp\nsearcher: {name: single\n") == [
        "spec.yaml:3: invalid YAML: while parsing a flow mapping; expected ',' or '}', but got '<stream end>'",
    ]


def test_duplicate_key() -> None:
    assert errors(MINIMAL + "name: again\n") == ["spec.yaml:7: name: duplicate key (first given at spec.yaml:1)"]


def test_several_errors_sorted_by_line() -> None:
    assert errors(textwrap.dedent("""\
        name: exp
        entrypoint: python3 train.py
        resources:
          slots_per_trial: 6
          slots_per_node: 4
          slot_type: GPU
          max_slots: 2
        searcher: {name: random, metric: loss, max_trials: 0, max_length: 10}
        labels: [a]
        lables: [b]
        """)) == [
        "spec.yaml:5: resources.slots_per_node: expected a divisor of slots_per_trial (6), found 4 (an integer)",
        "spec.yaml:6: resources.slot_type: expected one of gpu, cpu, found 'GPU' (a string)",
        ("spec.yaml:8: searcher.max_trials: expected an integer >= 1 (the 'random' searcher needs it), "
        "found 0 (an integer)"),
        "spec.yaml:10: lables: unknown key; did you mean 'labels'?",
    ]


def test_environment_errors() -> None:
    assert errors(MINIMAL + "environment:\n  environment_variables: [A=1, B, CADE_X=1, A=2]\n") == [
        'spec.yaml:8: environment.environment_variables[1]: expected "NAME=value", found \'B\' (a string)',
        ("spec.yaml:8: environment.environment_variables: expected a name not starting with CADE_ (cade sets "
        "those), found 'CADE_X'"),
        "spec.yaml:8: environment.environment_variables: expected each variable once, found 'A' again",
    ]


def test_determined_trial_class_entrypoint_runs_the_pytorch_harness() -> None:
    spec = parse(MINIMAL.replace("python3 train.py", "model_def:MnistTrial"))
    assert spec.entrypoint == ("python3", "-m", "cade_cli.det.pytorch.run", "--config", "spec.yaml",
                               "model_def:MnistTrial")
    assert parse(MINIMAL).entrypoint == ("python3", "train.py")


def test_section_that_is_not_a_mapping_is_reported_once() -> None:
    assert errors("name: exp\nentrypoint: x\nsearcher: random\n") == [
        "spec.yaml:3: searcher: expected a mapping, found 'random' (a string)",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("", "spec.yaml: the spec is empty; expected a mapping with at least name, entrypoint and searcher"),
    ("# nothing\n", "spec.yaml: the spec is empty; expected a mapping with at least name, entrypoint and searcher"),
    ("- a\n- b\n", ("spec.yaml:1: expected a mapping of spec keys (name, entrypoint, searcher, ...) at the top "
                   "level, found a list")),
    ("a: &x [*x]\n", "spec.yaml:1: a[0]: an alias refers to itself; expected a finite value"),
    ("a: !!python/name:os.system x\n", ("spec.yaml:1: a: unsupported YAML tag "
                                       "'tag:yaml.org,2002:python/name:os.system'; expected a plain value")),
])
def test_degenerate_documents(text: str, message: str) -> None:
    assert errors(text)[0] == message


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    [message] = errors("\n".join(lines))
    assert "the document is too large" in message


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="missing.yaml: no such file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_spec(binary)


def test_spec_from_raw_reports_problems_with_its_source() -> None:
    raw = parse(MINIMAL).raw
    raw["searcher"]["max_length"] = -1
    with pytest.raises(SpecError) as caught:
        spec_from_raw(raw)
    assert str(caught.value) == ("<ledger>: searcher.max_length: expected an integer >= 1 or a mapping like "
                                 "{batches: N} (units: batches, records, epochs) (optional: without it the trial "
                                 "decides its length), found -1 (an integer)")
