"""`cade plot`: plotext text in the terminal, matplotlib files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_ledger import all_experiments, experiment_in_state, write_ledger

from cade_cli.cli import cli
from cade_cli.errors import CadeError
from cade_cli.views.plots import (
    curve_lines,
    hparam_axes,
    ladder_bars,
    save_plot,
    terminal_plot,
)


def test_curve_lines_follow_the_leading_trials() -> None:
    data = experiment_in_state("active", 2)
    lines = curve_lines(data, "val_loss", count=2)
    assert [line.label for line in lines] == ["#11 validation", "#1 validation"]
    assert lines[0].xs == sorted(lines[0].xs) and lines[0].xs[-1] == 900
    training = curve_lines(data, "loss", count=2)  # reported by training only
    assert [line.label for line in training] == ["#11 training", "#1 training"]
    assert training[0].xs[0] == 50


def test_hparam_axes_skip_constants_and_index_categories() -> None:
    axes = {axis.name: axis for axis in hparam_axes(experiment_in_state("active", 2), "val_loss")}
    assert "batch_size" not in axes  # the same for every trial
    assert axes["lr"].log and not axes["layers"].log
    assert axes["optimizer.name"].categories == ("adam", "sgd")
    assert set(axes["optimizer.name"].xs) <= {0.0, 1.0}
    assert len(axes["lr"].trials) == len(axes["lr"].ys) == 9  # trials with a validation


def test_ladder_bars() -> None:
    labels, reached, promoted = ladder_bars(experiment_in_state("active", 2))
    assert labels == ["b0 100", "b0 300", "b0 900", "b1 300", "b1 900"]
    assert reached == [7, 3, 1, 2, 1] and promoted == [3, 2, 0, 1, 0]


@pytest.mark.parametrize("kind", ["curves", "hparams", "ladder"])
def test_terminal_plot_draws(kind: str) -> None:
    text = terminal_plot(experiment_in_state("active", 2), kind, width=90, height=20)
    assert "\x1b[3" not in text  # colourless unless asked
    assert any(ch in text for ch in "▀▄▖▗▘▝▚▞█")  # something was drawn
    assert len(text.splitlines()) >= 15


def test_unknown_metric_is_a_user_error() -> None:
    with pytest.raises(CadeError) as err:
        terminal_plot(experiment_in_state("active", 2), "curves", metric="nope")
    assert err.value.exit_code == 2 and "val_loss" in (err.value.hint or "")


def test_image_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    data = experiment_in_state("active", 2)
    png = save_plot(data, tmp_path / "c.png", "curves")
    assert png.read_bytes().startswith(b"\x89PNG")
    svg = save_plot(data, tmp_path / "h.svg", "hparams")
    assert b"<svg" in svg.read_bytes()[:500]
    assert save_plot(data, tmp_path / "l.png", "ladder").stat().st_size > 1000
    with pytest.raises(CadeError, match="image format") as err:
        save_plot(data, tmp_path / "c.jpg", "curves")
    assert ".png or .svg" in (err.value.hint or "")


def test_cli_plot(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    write_ledger(ledger, all_experiments()).close()
    runner = CliRunner()
    result = runner.invoke(cli, ["plot", "digits-active", "--kind", "ladder", "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    assert "b1 900" in result.output
    missing = runner.invoke(cli, ["plot", "42", "--ledger", str(ledger)])
    assert missing.exit_code == 4 and "no experiment 42" in missing.output
