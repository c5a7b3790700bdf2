"""The command line under hostile input: ids that are no ids, Ctrl-C at any moment, a
missing optional extra. Each gives a clean message and its documented exit code."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_ledger import all_experiments, write_ledger

from cade_cli.cli import cli
from cade_cli.cli.params import ExperimentRef
from cade_cli.errors import EXIT_CODES, INTERRUPTED
from cade_cli.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
BIG = "99999999999999999999999"


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    path = tmp_path / "ledger.db"
    write_ledger(path, all_experiments()).close()
    return str(path)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.output


@pytest.mark.parametrize("command", ["status", "best", "cancel", "plot", "export"])
def test_an_id_past_what_the_ledger_stores_is_a_usage_error(ledger: str, command: str) -> None:
    code, output = _run(command, BIG, "--ledger", ledger)
    assert code == 2
    assert (f"Invalid value for '{'[EXP]' if command in ('status', 'best') else 'EXP'}': "
            f"{BIG} is not an experiment id: ids run from 1 to 9223372036854775807\n") in output


def test_logs_checks_both_ids(ledger: str) -> None:
    code, output = _run("logs", "99999999999999999999", "--ledger", ledger)
    assert code == 2
    assert ("Invalid value for 'TRIAL': 99999999999999999999 is not a trial id: "
            "ids run from 1 to 9223372036854775807") in output
    code, output = _run("logs", f"{BIG}.1", "--ledger", ledger)
    assert code == 2 and "is not an experiment id" in output
    code, output = _run("logs", "1.x", "--ledger", ledger)
    assert code == 2 and "'1.x' is not N or EXP.N" in output


@pytest.mark.parametrize("text", ["²", "٣", "1²", "Ⅻ"])
def test_digits_other_than_0_to_9_are_refused(ledger: str, text: str) -> None:
    for args in (["status", text], ["logs", text], ["logs", f"{text}.1"]):
        code, output = _run(*args, "--ledger", ledger)
        assert code == 2, (args, output)
        assert f"{text!r} is not" in output and "ids are written with the digits 0-9" in output


def test_a_valid_id_and_a_name_still_work(ledger: str) -> None:
    assert _run("status", "2", "--ledger", ledger)[0] == 0
    assert _run("status", "digits-active", "--ledger", ledger)[0] == 0
    code, output = _run("status", "0", "--ledger", ledger)
    assert code == 2 and "ids run from 1 to" in output


def test_the_ledger_takes_a_superscript_for_a_name(ledger: str) -> None:
    with pytest.raises(Exception) as err:
        Ledger(ledger, create=False).find_experiment("²")
    assert "no experiment with id or name '²'" in str(err.value)


# ------------------------------------------------------------------------ Ctrl-C

def test_ctrl_c_while_a_command_runs(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(Ledger, "find_experiment", interrupted)
    assert _run("status", "1", "--ledger", ledger) == (INTERRUPTED, "Interrupted.\n")


def test_ctrl_c_while_the_arguments_are_parsed(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(ExperimentRef, "convert", interrupted)
    assert _run("status", "1", "--ledger", ledger) == (INTERRUPTED, "Interrupted.\n")


_INTERRUPT_ON_IMPORT = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
sys.argv = ["cade", "status", "--ledger", {ledger!r}]
from cade_cli.cli import main
main()
"""


@pytest.mark.parametrize("module", ["click", "cade_cli.cli.run_format", "sqlite3", "cade_cli.cli.read_cmds",
                                    "cade_cli.engine.lifecycle"])
def test_ctrl_c_while_cade_is_still_starting(ledger: str, module: str) -> None:
    """The first half second is spent importing: a Ctrl-C during any of it is clean too."""
    script = _INTERRUPT_ON_IMPORT.format(module=module, ledger=ledger)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            check=False)
    assert (result.returncode, result.stderr, result.stdout) == (INTERRUPTED, "Interrupted.\n", "")


# A real SIGINT raised where CPython 3.11 cannot pass its KeyboardInterrupt on: inside a
# weakref callback (the import system's module locks run such callbacks), where it is printed
# as "Exception ignored" and dropped, or inside __set_name__, where it comes out wrapped in a
# RuntimeError. Either lands while a module of the command is imported.
_LOST_ON_IMPORT = """
import signal, sys, weakref
class Landing:
    def __set_name__(self, owner, name):
        signal.raise_signal(signal.SIGINT)
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            if {where!r} == "weakref callback":
                class Thing: pass
                thing = Thing()
                ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGINT))
                del thing
            else:
                class Owner:
                    field = Landing()
sys.meta_path.insert(0, Interrupt())
sys.argv = ["cade", "top", "--ledger", {ledger!r}, "--no-sync"]
from cade_cli.cli import main
main()
"""


@pytest.mark.parametrize(("where", "code", "stderr"), [
    ("weakref callback", 0, ""),  # raised at the view's first round: Ctrl-C is how one leaves it
    ("__set_name__", INTERRUPTED, "Interrupted.\n"),  # read as the interrupt it wraps
])
def test_a_ctrl_c_that_cpython_loses_still_ends_the_command(ledger: str, where: str, code: int,
                                                            stderr: str) -> None:
    """`cade top` runs until q or Ctrl-C: a dropped Ctrl-C would leave it running."""
    script = _LOST_ON_IMPORT.format(module="cade_cli.views.top", where=where, ledger=ledger)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdin=subprocess.DEVNULL, check=False,
                            # as a terminal starts it (see the test below)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (result.returncode, result.stderr) == (code, stderr)


# What the `cade` console script does (`from cade_cli.cli import main; main()`), saying when
# cade's own code is running: a Ctrl-C before that is Python's to handle.
_READY_THEN_CADE = """
import sys
sys.argv = ["cade"] + sys.argv[1:]
from cade_cli.cli import main
print("ready", flush=True)
main()
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5])
def test_a_real_sigint_at_several_moments(ledger: str, delay: float) -> None:
    # As from a terminal: a shell that started this run in the background (CI, nohup ... &)
    # leaves SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    process = subprocess.Popen(
        [sys.executable, "-c", _READY_THEN_CADE, "top", "--ledger", ledger, "--no-sync"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        # Python ignores SIGINT in a background child; cade must see it as a terminal sends it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr
    assert process.returncode in (0, INTERRUPTED), stderr


# ------------------------------------------------------------------------ extras

def test_plot_without_plotext_names_the_extra(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotext", None)  # `import plotext` now fails
    code, output = _run("plot", "digits-active", "--ledger", ledger)
    assert code == 6 == min(c for c, m in EXIT_CODES.items() if "extra" in m)
    assert output == ("Error: drawing a plot in the terminal needs plotext, which is not installed\n"
                      "hint: pip install 'cade[plot]' (or: pip install plotext)\n")


def test_plot_to_a_file_without_matplotlib_names_the_extra(ledger: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, output = _run("plot", "digits-active", "--out", str(tmp_path / "p.png"), "--ledger", ledger)
    assert code == 6
    assert "hint: pip install 'cade[plot]' (or: pip install matplotlib)" in output


# ------------------------------------------------------------------------ one table

def test_the_exit_codes_are_one_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.MULTILINE))
    assert {int(code): meaning for code, meaning in rows.items()} == EXIT_CODES
    code, output = _run("--help")
    flat = " ".join(output.split())
    assert code == 0
    for number, meaning in EXIT_CODES.items():
        assert f"{number} {' '.join(meaning.split())}" in flat


# ------------------------------------------------------------------------ the README

def _input_promises() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- promises: input (begin) -->", "<!-- promises: input (end) -->"
    return readme[readme.index(begin):readme.index(end)]


def test_every_input_promise_names_tests_that_exist() -> None:
    """Each `path::test` (or `::test` of the path before it) in the input promises exists."""
    text = " ".join(_input_promises().split())
    named = re.findall(r"`((?:tests/hostile/[\w/]+\.py)?)::(\w+)`", text)
    assert len(named) >= 20
    current = ""
    for path, test in named:
        current = path or current
        source = (ROOT / current).read_text(encoding="utf-8")
        assert f"def {test}(" in source, f"{current}::{test}"


def test_the_promised_limits_are_the_code_s() -> None:
    from cade_cli.cli.params import MAX_ID
    from cade_cli.search.space import MAX_GRID_POINTS
    from cade_cli.spec.files import MAX_INPUT_BYTES

    text = " ".join(_input_promises().split())
    assert f"more than {MAX_GRID_POINTS:,} points" in text
    assert f"at most {MAX_INPUT_BYTES // 2**20} MiB" in text
    assert MAX_ID == 2**63 - 1 and "from 1 to 2^63 - 1" in text
