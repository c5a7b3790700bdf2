"""Control characters never reach the terminal: names, params, metric names and messages
holding ESC/OSC/CSI sequences (from an older ledger, a trial or a scheduler) are shown
without them by status, best, the progress lines and top."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_ledger import experiment_in_state, write_ledger
from rich.console import Console

from cade_cli.cli import cli
from cade_cli.cli.run_format import status_text
from cade_cli.views.frames import render_frame
from cade_cli.views.model import ExperimentData, Snapshot
from cade_cli.views.progress import progress_view, summary_line
from cade_cli.views.terminal import printable

TITLE = "\x1b]0;owned\x07"       # OSC: sets the window title
CLEAR = "\x1b[2J\x1b[H"          # CSI: clears the screen
C1 = "\x9b31m\x85"               # C1 CSI and NEL
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # anything but newline


def hostile(state: str = "completed") -> ExperimentData:
    data = experiment_in_state(state, 1)
    exp = replace(data.experiment, name=f"digits{TITLE}", metric=f"val_loss{CLEAR}",
                  message=f"boom{CLEAR}\nsecond line{C1}")
    first, *rest = data.trials
    params = {**first.params, f"lr{TITLE}": f"[/]{CLEAR}x", "opt": {"name": f"adam{C1}"}}
    first = replace(first, params=params, message=f"trial says{TITLE} hi\x07")
    return replace(data, experiment=exp, trials=(first, *rest))


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    path = tmp_path / "ledger.db"
    write_ledger(path, [hostile()]).close()
    return str(path)


def test_printable_strips_whole_sequences() -> None:
    assert printable(f"a{TITLE}b{CLEAR}c{C1}d") == "abcd"
    assert printable("x\x1b]8;;http://e.test\x1b\\link\x1b]8;;\x1b\\y") == "xlinky"
    assert printable("l1\nl2\tz\r") == "l1 l2 z"
    assert printable("l1\nl2\tz\r", keep_newlines=True) == "l1\nl2 z"
    assert printable("é ü 中 [bold]") == "é ü 中 [bold]"


@pytest.mark.parametrize("args", [["status"], ["status", "1"], ["best", "1"]])
def test_status_and_best_print_no_control_character(ledger: str, args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--ledger", ledger])
    assert result.exit_code == 0, result.output
    assert not CONTROL.search(result.output), repr(result.output)
    assert "digits" in result.output


def test_status_shows_the_cleaned_text(ledger: str) -> None:
    result = CliRunner().invoke(cli, ["status", "1", "--ledger", ledger])
    lines = result.output.splitlines()
    assert lines[0] == "Experiment 1 digits: completed (adaptive_asha, slurm; val_loss, smaller is better)"
    assert lines[1:3] == ["  boom", "second line"]
    assert "  trial 1: trial says hi" in lines
    # Param values are shown as JSON, which writes control characters as visible escapes.
    assert 'lr="[/]\\u001b[2J\\u001b[Hx" opt.name="adam\\u009b31m\\u0085"' in result.output


def test_json_keeps_the_data_as_it_is(ledger: str) -> None:
    result = CliRunner().invoke(cli, ["status", "1", "--json", "--ledger", ledger])
    data = json.loads(result.output)
    assert data["experiment"]["name"] == f"digits{TITLE}"  # JSON escapes; nothing is lost


def test_the_progress_lines() -> None:
    data = hostile("active")
    line = summary_line(data.experiment, list(data.trials))
    assert not CONTROL.search(line) and line.startswith("experiment 1 digits [active]")
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(progress_view(data.experiment, list(data.trials), 0.5))
    assert not CONTROL.search(console.file.getvalue())


def test_top_frames() -> None:
    data = hostile("active")
    snapshot = Snapshot(experiments=(data.experiment,), current=data, taken=data.experiment.created + 60,
                        message=f"sync failed: {CLEAR}squeue")
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(render_frame(snapshot, 200))  # "[/]" in a value is data, not markup
    text = console.file.getvalue()
    assert not CONTROL.search(text), repr(text)
    assert "[/]x" in text and "sync failed: squeue" in text and "lr" in text


def test_top_once(ledger: str) -> None:
    result = CliRunner().invoke(cli, ["top", "1", "--once", "--no-sync", "--width", "200", "--ledger", ledger])
    assert result.exit_code == 0, result.output
    assert not CONTROL.search(result.output)


def test_status_text_of_records() -> None:
    data = hostile()
    assert not CONTROL.search(status_text(data.experiment, list(data.trials)))
