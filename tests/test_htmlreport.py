"""`cade report --html`: one offline file; user strings escaped; loads in headless Chromium
without script errors, draws its charts, sorts its table, and renders a non-blank page."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_ledger import STATES, all_experiments, experiment_in_state, write_ledger

from cade_cli.cli import cli
from cade_cli.views.html import CURVE_TRIALS, render_report, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (scripts/install-test-tools.sh installs it)")

# Appended only to the test's copy: clicks the "best" header twice and records the order.
CLICK_HARNESS = """<script>
(function () {
  var table = document.querySelector("table.sortable");
  var header = Array.prototype.filter.call(table.tHead.rows[0].cells,
      function (th) { return th.textContent === "best"; })[0];
  function order() { return Array.prototype.map.call(table.tBodies[0].rows,
      function (row) { return row.cells[0].textContent; }).join(","); }
  header.click();
  document.documentElement.setAttribute("data-sorted-ascending", order());
  header.click();
  document.documentElement.setAttribute("data-sorted-descending", order());
})();
</script></body>"""


def hostile_experiment():  # type: ignore[no-untyped-def]
    data = experiment_in_state("errored", 5)
    exp = replace(data.experiment, name="<script>alert('x')</script>",
                  message="bad <img src=x onerror=alert(1)>", owner="a&b")
    trial = replace(data.trials[0], params={**data.trials[0].params, "note": "<b>bold</b>"})
    return replace(data, experiment=exp, trials=(trial,) + data.trials[1:])


def test_user_strings_are_escaped() -> None:
    page = render_report(hostile_experiment())
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "a&amp;b" in page


@pytest.mark.parametrize("state", STATES)
def test_every_state_renders_offline(state: str) -> None:
    page = render_report(experiment_in_state(state, STATES.index(state) + 1))
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing external
    assert "<link" not in page and "@import" not in page


def test_report_sections_and_charts() -> None:
    page = render_report(experiment_in_state("active", 2))
    for title in ("Overview", "Learning curves", "parallel coordinates",
                  "val_loss against each hyperparameter", "Rung ladder", "Trials"):
        assert title in page
    assert page.count("<polyline") >= 20 and "<title>trial 11" in page
    assert "max_length:" in page and "3f2c9e1a7b" in page and "1236" in page


def run_chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium is required in CI (scripts/install-test-tools.sh)"
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def js_errors(dom: str) -> str | None:
    """What the page's error trap recorded on <html>, if anything."""
    found = re.search(r'<html[^>]*data-js-errors="([^"]*)"', dom)
    return found.group(1) if found else None


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


@needs_chromium
def test_chromium_runs_the_page_without_errors(tmp_path: Path) -> None:
    page = render_report(hostile_experiment()).replace("</body>", CLICK_HARNESS)
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    result = run_chromium("--dump-dom", path.as_uri())
    dom = result.stdout
    assert 'data-report-ready="1"' in dom, result.stderr[-2000:]
    assert js_errors(dom) is None
    assert not console_errors(result.stderr), console_errors(result.stderr)
    assert "<script>alert" not in dom
    assert len(re.findall(r'<polyline class="(curve|pc)"[^>]* points="[\d.]+,[\d.]+ ', dom)) >= 10
    assert len(re.findall(r"<circle ", dom)) >= 20 and "<rect " in dom
    ascending = re.search(r'data-sorted-ascending="([\d,]+)"', dom)
    descending = re.search(r'data-sorted-descending="([\d,]+)"', dom)
    assert ascending and descending
    scored = [t for t in hostile_experiment().trials if t.best_metric is not None]
    by_best = [str(t.id) for t in sorted(scored, key=lambda t: t.best_metric or 0)]
    assert ascending.group(1).split(",")[:len(by_best)] == by_best
    assert descending.group(1).split(",")[:len(by_best)] == by_best[::-1]


@needs_chromium
def test_the_error_trap_catches_errors(tmp_path: Path) -> None:
    broken = render_report(experiment_in_state("active", 2)).replace(
        "</body>", "<script>undefinedFunction();</script></body>")
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    result = run_chromium("--dump-dom", path.as_uri())
    assert "undefinedFunction" in (js_errors(result.stdout) or "")
    assert console_errors(result.stderr)


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the inflated (still filtered) scanlines of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, size = 8, b"", (0, 0)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    return size[0], size[1], zlib.decompress(idat)


@needs_chromium
def test_screenshot_is_not_blank(tmp_path: Path) -> None:
    path = write_report(experiment_in_state("active", 2), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    result = run_chromium("--window-size=1200,1600", f"--screenshot={shot}", path.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    width, height, raw = png_pixels(shot)
    assert (width, height) == (1200, 1600)
    stride = len(raw) // height
    rows = {raw[y * stride + 1:(y + 1) * stride] for y in range(0, height, 8)}
    assert len(rows) > 20  # many different rows: text and charts, not one flat colour
    assert len(set(raw)) > 30


def test_cli_report(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    write_ledger(ledger, all_experiments()).close()
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", "digits-active", "--html", str(out),
                                      "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    assert "digits-active" in out.read_text(encoding="utf-8")



def test_cli_report_of_an_unknown_metric_is_a_usage_error_as_plot(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    write_ledger(ledger, all_experiments()).close()
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", "digits-active", "--html", str(out), "--metric", "acc",
                                      "--ledger", str(ledger)])
    plot = CliRunner().invoke(cli, ["plot", "digits-active", "--metric", "acc", "--ledger", str(ledger)])
    assert (result.exit_code, result.output) == (plot.exit_code, plot.output) == (2, (
        "Error: experiment 2 has no metric 'acc'\nhint: reported metrics: accuracy, loss, val_loss\n"))
    assert not out.exists()

PAGER_HARNESS = """<script>
(function () {
  var table = document.querySelector("table.sortable");
  function visible() { return Array.prototype.filter.call(table.tBodies[0].rows,
      function (row) { return !row.hidden; }).length; }
  document.documentElement.setAttribute("data-visible-first", visible());
  document.querySelector(".pager button:last-child").click();
  document.querySelector(".pager button:last-child").click();
  document.documentElement.setAttribute("data-visible-last", visible());
  document.documentElement.setAttribute("data-pager", document.querySelector(".pager").textContent);
})();
</script></body>"""


def many_trials(count: int):  # type: ignore[no-untyped-def]
    data = experiment_in_state("completed", 3)
    trials = tuple(replace(data.trials[i % len(data.trials)], id=i + 1) for i in range(count))
    metrics = tuple(replace(m, trial=t.id) for t in trials for m in data.metrics
                    if m.trial == data.trials[(t.id - 1) % len(data.trials)].id)
    return replace(data, trials=trials, metrics=metrics)


def test_a_long_report_draws_the_best_curves_thinned() -> None:
    data = many_trials(250)
    page = render_report(data)
    assert "the best 50 of 250 trials" in page
    assert page.count('<polyline class="curve"') <= 2 * 50
    assert page.count("<tr>") == 250 + 1   # every trial is in the table (paged by the script)


@needs_chromium
def test_a_long_trials_table_is_paged(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(many_trials(250)).replace("</body>", PAGER_HARNESS),
                    encoding="utf-8")
    result = run_chromium("--dump-dom", path.as_uri())
    dom = result.stdout
    assert js_errors(dom) is None, js_errors(dom)
    assert 'data-visible-first="100"' in dom and 'data-visible-last="50"' in dom
    assert "rows 201–250 of 250" in dom


def test_the_report_reads_only_what_it_draws_and_draws_the_same(tmp_path: Path) -> None:
    from cade_cli.views.html import read_report_data
    from cade_cli.views.model import read_experiment

    data = many_trials(120)
    ledger = write_ledger(tmp_path / "ledger.db", [data])
    exp = ledger.find_experiment(data.experiment.id)
    full, lean = read_experiment(ledger, exp), read_report_data(ledger, exp)
    assert render_report(lean) == render_report(full)
    training = {m.trial for m in lean.metrics if m.kind == "training"}
    assert len(training) <= CURVE_TRIALS < len({m.trial for m in full.metrics})
