"""Hostile spec and settings input: refused at load with file:line and key path, quickly,
and never as a traceback (OverflowError, MemoryError) later on."""

from __future__ import annotations

import ast
import os
import re
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.errors import SpecError
from cade_cli.spec.experiment import ExperimentSpec, load_spec, parse_spec
from cade_cli.spec.files import MAX_INPUT_BYTES
from cade_cli.spec.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """\
name: exp
entrypoint: python3 train.py
searcher:
  name: random
  metric: loss
  max_length: 100
  max_trials: 4
"""


def parse(extra: str) -> ExperimentSpec:
    return parse_spec(MINIMAL + textwrap.dedent(extra), "spec.yaml")


def errors(extra: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse(extra)
    assert caught.value.exit_code == 2
    return str(caught.value).splitlines()


# ------------------------------------------------------------------------ 8: bounds

@pytest.mark.parametrize("hp, message", [
    ("{type: log, base: 10, minval: -3, maxval: 400}",
     ("spec.yaml:9: hyperparameters.lr.maxval: expected an exponent with 10 ** maxval a positive finite "
     "number, found 400 (an integer)")),
    ("{type: log, base: 10, minval: -400, maxval: 1}",
     ("spec.yaml:9: hyperparameters.lr.minval: expected an exponent with 10 ** minval a positive finite "
     "number, found -400 (an integer)")),
    ("{type: log, base: 1, minval: 0, maxval: 1}",
     "spec.yaml:9: hyperparameters.lr.base: expected a finite number > 0 other than 1, found 1 (an integer)"),
    ("{type: log, base: .inf, minval: 0, maxval: 1}",
     "spec.yaml:9: hyperparameters.lr.base: expected a finite number > 0 other than 1, found inf (a number)"),
    ("{type: double, minval: -.inf, maxval: 1}",
     "spec.yaml:9: hyperparameters.lr.minval: expected a finite number, found -inf (a number)"),
    ("{type: double, minval: 0, maxval: 1e309}",
     "spec.yaml:9: hyperparameters.lr.maxval: expected a finite number, found inf (a number)"),
    ("{type: int, minval: 0, maxval: 1" + "0" * 400 + "}",
     "spec.yaml:9: hyperparameters.lr.maxval: expected an integer from -9223372036854775808 to "
     "9223372036854775807, found 1" + "0" * 400 + " (an integer)"),
    ("{type: double, minval: -1e308, maxval: 1e308}",
     ("spec.yaml:9: hyperparameters.lr.maxval: expected a value with maxval - minval finite "
     "(minval is -1e+308), found 1e+308 (a number)")),
])
def test_bounds_that_give_no_finite_value_are_refused(hp: str, message: str) -> None:
    assert errors(f"hyperparameters:\n  lr: {hp}\n") == [message]


def test_dry_run_of_an_overflowing_log_bound_is_a_clean_error(tmp_path: Path) -> None:
    spec = tmp_path / "exp.yaml"
    spec.write_text(MINIMAL + "hyperparameters:\n  lr: {type: log, base: 10, minval: -3, maxval: 400}\n")
    result = CliRunner().invoke(cli, ["submit", str(spec), "--dry-run", "--scheduler", "local"])
    assert result.exit_code == 2
    assert result.output == (f"Error: {spec}:9: hyperparameters.lr.maxval: expected an exponent with "
                             f"10 ** maxval a positive finite number, found 400 (an integer)\n")


def test_the_widest_finite_bounds_are_kept() -> None:
    spec = parse("hyperparameters:\n  lr: {type: log, base: 10, minval: -300, maxval: 300}\n"
                 "  x: {type: double, minval: -1e300, maxval: 1e300}\n")
    assert len(spec.hyperparameters.items) == 2


# ------------------------------------------------------------------------ 10: size cap

def test_dev_zero_is_refused_fast() -> None:
    start = time.monotonic()
    with pytest.raises(SpecError) as err:
        load_spec("/dev/zero")
    assert time.monotonic() - start < 5
    assert err.value.message == "/dev/zero: larger than 1024 KiB, the limit for the experiment spec"


def test_a_spec_over_the_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "w", encoding="utf-8") as handle:
        handle.write(MINIMAL)
        # 50 MB of comments: parsing it would take a minute and a gigabyte.
        handle.writelines(("# " + "x" * 1021 + "\n") * 1024 for _ in range(50))
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["preview", str(big)])
    assert time.monotonic() - start < 5
    assert result.exit_code == 2
    assert result.output == (f"Error: {big}: larger than 1024 KiB, the limit for the experiment spec\n"
                             f"hint: is {big} really the experiment spec?\n")


def test_a_spec_at_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    padding = MAX_INPUT_BYTES - len(MINIMAL) - 3
    path.write_text(MINIMAL + "#" + "x" * padding + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_INPUT_BYTES - 1
    assert load_spec(path).name == "exp"


def test_a_pipe_is_read_as_a_file() -> None:
    read, write = os.pipe()
    os.write(write, MINIMAL.encode())
    os.close(write)
    try:
        assert load_spec(f"/dev/fd/{read}").name == "exp"
    finally:
        os.close(read)


def test_cade_config_dev_zero_is_refused_fast() -> None:
    with pytest.raises(SpecError) as err:
        load_settings({"CADE_CONFIG": "/dev/zero"})
    assert err.value.message == "/dev/zero: larger than 1024 KiB, the limit for the cade configuration"


# ------------------------------------------------------------------------ 19: missing paths

def test_cade_config_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as err:
        load_settings({"CADE_CONFIG": str(missing)})
    assert err.value.message == f"{missing}: no such file, expected the cade configuration"
    assert err.value.hint == "CADE_CONFIG names this file; fix the path or unset CADE_CONFIG"


def test_the_default_config_file_may_be_absent(tmp_path: Path) -> None:
    assert load_settings({"XDG_CONFIG_HOME": str(tmp_path)}).scheduler == "auto"
    assert load_settings({"CADE_CONFIG": os.devnull}).scheduler == "auto"


def test_cade_templates_naming_a_missing_directory_is_an_error(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "site-templates"
    monkeypatch.setenv("CADE_CONFIG", os.devnull)
    monkeypatch.setenv("CADE_TEMPLATES", str(missing))
    result = CliRunner().invoke(cli, ["templates", "list"])
    assert result.exit_code == 2
    assert result.output == (f"Error: environment variable CADE_TEMPLATES: templates must be an existing "
                             f"directory; {str(missing)!r} does not exist\n")
    monkeypatch.setenv("CADE_TEMPLATES", os.devnull)
    result = CliRunner().invoke(cli, ["templates", "list"])
    assert result.exit_code == 2 and f"{os.devnull!r} is not a directory" in result.output


# ------------------------------------------------------------------------ 13: names

@pytest.mark.parametrize("block", [
    'environment:\n  environment_variables:\n    "FOO\\n": x\n',
    'environment:\n  environment_variables:\n    - "FOO\\n=x"\n',
])
def test_a_variable_name_with_a_trailing_newline_is_refused(block: str) -> None:
    assert errors(block) == [("spec.yaml:10: environment.environment_variables: expected a variable name "
                             "(letters, digits, _), found 'FOO\\n'")]


def _regex_literals() -> list[tuple[str, str]]:
    """(module, pattern) for every string passed to a function of `re`."""
    found = []
    for path in sorted((ROOT / "cade_cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                    and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                found.append((str(path.relative_to(ROOT)), node.args[0].value))
    return found


def test_no_pattern_ends_in_a_dollar_that_lets_a_newline_through() -> None:
    """`$` also matches before a trailing newline: whole-value checks use fullmatch (or \\Z)."""
    literals = _regex_literals()
    assert len(literals) > 10
    assert [(module, pattern) for module, pattern in literals
            if re.search(r"(?<!\\)\$$", pattern)] == []


# ------------------------------------------------------------------------ 17: directives

@pytest.mark.parametrize("block, path", [
    ('slurm:\n  account: "proj\\n#SBATCH --qos=high"\n', "slurm.account"),
    ('slurm:\n  qos: "normal\\r"\n', "slurm.qos"),
    ('slurm:\n  gpu_type: "a100\\u001b]0;x\\u0007"\n', "slurm.gpu_type"),
    ('resources:\n  resource_pool: "gpu\\nrm -rf ~"\n', "resources.resource_pool"),
    ('pbs:\n  account: "proj\\n"\n', "pbs.account"),
])
def test_a_control_character_in_a_directive_value_is_refused_with_its_line(block: str, path: str) -> None:
    [message] = errors(block)
    assert message.startswith(f"spec.yaml:9: {path}: expected a non-empty string on one line, without "
                              f"control characters (a scheduler directive), found ")


def test_a_control_character_in_passthrough_arguments_is_refused_with_its_index() -> None:
    assert errors('slurm:\n  sbatch_args: ["--exclusive", "--comment=a\\nb"]\n') == [
        ("spec.yaml:9: slurm.sbatch_args[1]: expected a string on one line, without control characters "
        "(a scheduler directive), found '--comment=a\\nb' (a string)")]
    [message] = errors('pbs:\n  pbsbatch_args: ["-V\\u0085"]\n')
    assert message.startswith("spec.yaml:9: pbs.pbsbatch_args[0]: expected a string on one line")


# ------------------------------------------------------------------------ 14: names

def test_names_shown_on_terminals_are_one_line_of_text() -> None:
    text = MINIMAL.replace("name: exp", 'name: "exp\\e]0;owned\\a"').replace(
        "metric: loss", 'metric: "loss\\e[2J"')
    with pytest.raises(SpecError) as caught:
        parse_spec(text + 'hyperparameters:\n  "lr\\e[31m": 0.1\n', "spec.yaml")
    assert str(caught.value).splitlines() == [
        ("spec.yaml:1: name: expected a non-empty string on one line, without control characters "
        "(the experiment's name), found 'exp\\x1b]0;owned\\x07' (a string)"),
        ("spec.yaml:5: searcher.metric: expected a non-empty string on one line, without control characters "
        "(the validation metric to compare trials by), found 'loss\\x1b[2J' (a string)"),
        ("spec.yaml:9: hyperparameters.'lr\\x1b[31m': expected a non-empty hyperparameter name on one line, "
        "without control characters, found 'lr\\x1b[31m'"),
    ]


def test_hostile_environment_values_reach_the_job_unchanged(tmp_path: Path) -> None:
    """Values are shell-quoted in the job script: a newline, `$(...)`, quotes and a
    backslash arrive as data, and nothing in them runs."""
    import subprocess

    from cade_cli.jobs import render

    value = "a\nb $(touch owned) `touch owned` ' \" \\ ;exit 3"
    spec = parse_spec(MINIMAL + "environment:\n  environment_variables:\n    HOSTILE: "
                      + '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"\n',
                      str(tmp_path / "spec.yaml"))
    assert dict(spec.environment_variables)["HOSTILE"] == value
    cade_env = render.cade_environment(
        spec, backend="local", experiment_id=1, trial_id=1, segment=1, run_dir=tmp_path, trial_dir=tmp_path,
        start_length=0, target_length=10, report_at=[10], resume_from=None, trial_seed=1)
    context = render.build_context(spec, backend="local", job_name="cade-1-1-1", cade_env=cade_env,
                                   directives=[])
    script = render.render_script("local.sh.j2", context, ())
    result = subprocess.run(["bash", "-c", _export_block(script) + '\nprintf %s "$HOSTILE"'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, value), result.stderr
    assert not (tmp_path / "owned").exists()


def _export_block(script: str) -> str:
    """The `export HOSTILE=...` statement, which may span lines inside its quotes."""
    text = script[script.index("export HOSTILE="):]
    end, quote = len("export HOSTILE="), ""
    while end < len(text) and (quote or text[end] != "\n"):
        if quote and text[end] == quote:
            quote = ""
        elif not quote and text[end] in "'\"":
            quote = text[end]
        end += 1
    return text[:end]
