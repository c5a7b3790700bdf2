"""Nothing a user typed reaches a shell unquoted.

Shell metacharacters are planted in the experiment name, the working directory,
hyperparameter names and values, entrypoint arguments and environment values. The local
script is rendered and RUN; the Slurm and PBS scripts are checked with `bash -n`. No
`canary` file may appear, and every value must arrive intact.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cade_cli.jobs import render, rundir
from cade_cli.search.space import Nested
from cade_cli.spec.experiment import ExperimentSpec, ResourcesSpec, SearcherSpec

NASTY = [
    "$(touch canary)",
    "`touch canary`",
    "'; touch canary; '",
    '"; touch canary; "',
    "line one\ntouch canary",
    "x;touch canary&&touch canary|touch canary",
    "$HOME ${PATH} \\ * ~ ! #",
]
PROBE = '''
import json, os, sys
from cade_cli import report
out = {"argv": sys.argv[1:], "env": dict(os.environ), "params": report.params(), "cwd": os.getcwd()}
with open(os.path.join(os.environ["CADE_RUN_DIR"], "probe.json"), "w") as handle:
    json.dump(out, handle)
'''
SITE_TEMPLATE = '''{% extends "builtin:local.sh.j2" %}
{% block setup %}
printf '%s' {{ experiment_name|q }} > "$CADE_RUN_DIR/name.txt"
{% endblock %}
'''
NASTY_PARAMS = {
    "$(touch canary)": "`touch canary`",
    "lr; touch canary": 0.1,
    "nested": {"a\nb": "'; touch canary; '", "list": NASTY},
}


def nasty_spec(workdir: Path, probe: Path, launcher: str = "none") -> ExperimentSpec:
    return ExperimentSpec(
        name="exp " + " ".join(NASTY),
        entrypoint=(sys.executable, str(probe), *NASTY),
        hyperparameters=Nested(()),
        searcher=SearcherSpec(name="single", metric="loss $(touch canary)", max_length=10),
        resources=ResourcesSpec(slots_per_trial=1, launcher=launcher, resource_pool="q;touch canary"),
        environment_variables=tuple((f"NASTY_{i}", value) for i, value in enumerate(NASTY)),
        workdir=str(workdir),
    )


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    workdir = tmp_path / "work $(touch canary) `touch canary` dir"
    workdir.mkdir()
    probe = workdir / "probe.py"
    probe.write_text(PROBE)
    return workdir, probe


def assert_no_canary(root: Path) -> None:
    assert not list(root.rglob("canary")), "a planted command ran"
    assert not Path("canary").exists()


def ensure_launcher(run_dir: Path, launcher: str) -> None:
    """Use the package's launcher when it exists; otherwise a minimal stand-in."""
    path = run_dir / "launch" / f"{launcher}.sh"
    if not path.exists():
        path.write_text('#!/bin/sh\nexec "$@"\n')


def prepare(tmp_path: Path, spec: ExperimentSpec, backend: str, template_dirs: tuple[Path, ...] = ()):
    return rundir.prepare_segment(
        spec=spec, experiment_id=5, trial_id=1, segment=1, params=NASTY_PARAMS,
        start_length=0, target_length=10, report_at=[5], resume_from=None, trial_seed=3,
        backend=backend, exp_root=tmp_path / "state $(touch canary)" / "experiments" / "5",
        template_dirs=template_dirs,
    )


def test_local_script_runs_with_every_value_intact(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    workdir, probe = layout
    site = tmp_path / "site"
    site.mkdir()
    (site / "local.sh.j2").write_text(SITE_TEMPLATE)
    spec = nasty_spec(workdir, probe)
    paths = prepare(tmp_path, spec, "local", (site,))
    ensure_launcher(paths.run_dir, "none")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CADE_", "SLURM_", "PBS_"))}
    done = subprocess.run(["bash", str(paths.script)], cwd=paths.run_dir, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert_no_canary(tmp_path)

    seen = json.loads((paths.run_dir / "probe.json").read_text())
    assert seen["argv"] == NASTY
    assert seen["params"] == NASTY_PARAMS
    assert Path(seen["cwd"]) == workdir
    for i, value in enumerate(NASTY):
        assert seen["env"][f"NASTY_{i}"] == value
    assert seen["env"]["CADE_METRIC"] == "loss $(touch canary)"
    assert seen["env"]["CADE_RUN_DIR"] == str(paths.run_dir)
    assert (paths.run_dir / "name.txt").read_text() == spec.name
    assert (paths.run_dir / "exit_code").read_text().strip() == "0"
    params_file = json.loads((paths.trial_dir / "params.json").read_text())
    assert params_file["params"] == NASTY_PARAMS


def cluster_directives(backend: str, spec: ExperimentSpec, run_dir: Path) -> list[str]:
    """The backend's own directives when it exists; else quoted stand-ins carrying the values."""
    try:
        return rundir.scheduler_directives(backend, spec, "cade-5-1-1", run_dir)
    except (ImportError, AttributeError):
        return [shlex.quote(f"--comment={v}") for v in NASTY if "\n" not in v]


@pytest.mark.parametrize("backend", ["slurm", "pbs"])
@pytest.mark.parametrize("launcher", render.LAUNCHERS)
def test_cluster_scripts_parse(tmp_path: Path, layout: tuple[Path, Path], backend: str, launcher: str) -> None:
    workdir, probe = layout
    spec = nasty_spec(workdir, probe, launcher)
    # PBS refuses spaces in output paths; ${IFS} plants the space for the shell instead.
    run_dir = tmp_path / "run`touch${IFS}canary`;touch${IFS}canary"
    cade_env = render.cade_environment(
        spec, backend=backend, experiment_id=5, trial_id=1, segment=1, run_dir=run_dir, trial_dir=tmp_path,
        start_length=0, target_length=10, report_at=[5], resume_from=None, trial_seed=3,
    )
    context = render.build_context(spec, backend=backend, job_name="cade-5-1-1", cade_env=cade_env,
                                   directives=cluster_directives(backend, spec, run_dir))
    script = tmp_path / "job.sh"
    script.write_text(render.render_script(render.TEMPLATE_FOR_BACKEND[backend], context))
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert_no_canary(tmp_path)
