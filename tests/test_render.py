"""render.py: quoting, the site-first loader, `builtin:` extension, template errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cade_cli.errors import SpecError
from cade_cli.jobs import render
from cade_cli.jobs.layout import Layout, trial_layout
from cade_cli.search.space import Nested
from cade_cli.spec.experiment import ExperimentSpec, ResourcesSpec, SearcherSpec


def make_spec(**changes: object) -> ExperimentSpec:
    fields: dict[str, object] = {
        "name": "exp",
        "entrypoint": ("python3", "train.py"),
        "hyperparameters": Nested(()),
        "searcher": SearcherSpec(name="single", metric="loss", max_length=10),
        "workdir": "/work dir",
    }
    fields.update(changes)
    return ExperimentSpec(**fields)  # type: ignore[arg-type]


def context_for(spec: ExperimentSpec, backend: str = "local", directives: tuple[str, ...] = ()) -> dict:
    cade_env = render.cade_environment(
        spec, backend=backend, experiment_id=1, trial_id=2, segment=3, run_dir=Path("/r/trials/2/segments/3"),
        trial_dir=Path("/r/trials/2"), start_length=0, target_length=10, report_at=[5, 10],
        resume_from=None, trial_seed=9,
    )
    return render.build_context(spec, backend=backend, job_name="cade-1-2-3", cade_env=cade_env,
                                directives=list(directives))


def test_q_filter_quotes_every_value() -> None:
    assert render.shell_quote("a b") == "'a b'"
    assert render.shell_quote("$(x)") == "'$(x)'"
    assert render.shell_quote(3) == "3"
    assert render.shell_quote_args(["a", "b c", "'"]) == "a 'b c' ''\"'\"''"
    with pytest.raises(TypeError):
        render.shell_quote_args("not a list")


def test_context_is_plain_sorted_strings() -> None:
    spec = make_spec(environment_variables=(("ZED", "1"), ("ALPHA", "two words")))
    ctx = context_for(spec)
    assert ctx["user_env"] == [("ALPHA", "two words"), ("ZED", "1")]
    names = [name for name, _ in ctx["cade_env"]]
    assert names == sorted(names)
    env = dict(ctx["cade_env"])
    assert env["CADE_REPORT_AT"] == "5,10"
    assert env["CADE_RESUME_FROM"] == ""
    assert env["CADE_PARAMS_FILE"] == "/r/trials/2/params.json"
    assert set(env) == {
        "CADE_EXPERIMENT_ID", "CADE_TRIAL_ID", "CADE_SEGMENT", "CADE_RUN_DIR", "CADE_TRIAL_DIR",
        "CADE_PARAMS_FILE", "CADE_START_LENGTH", "CADE_TARGET_LENGTH", "CADE_LENGTH_UNIT",
        "CADE_REPORT_AT", "CADE_RESUME_FROM", "CADE_METRIC", "CADE_LAUNCHER", "CADE_NPROCS",
        "CADE_NODES", "CADE_TASKS_PER_NODE", "CADE_SEED", "CADE_DECISION_WAIT",
    }
    for value in list(env.values()) + [ctx["nprocs"], ctx["nodes"], ctx["workdir"]]:
        assert isinstance(value, str)


def test_task_layout() -> None:
    four_on_two = ResourcesSpec(slots_per_trial=4, slots_per_node=2)
    assert trial_layout(make_spec(resources=four_on_two), "local") == Layout(2, 2, 4, 2, 0)
    none_launcher = ResourcesSpec(slots_per_trial=4, slots_per_node=2, launcher="none")
    assert trial_layout(make_spec(resources=none_launcher), "slurm") == Layout(2, 2, 2, 1, 0)


def test_bad_environment_names_and_multiline_directives_are_refused() -> None:
    with pytest.raises(SpecError, match="not a valid shell name"):
        context_for(make_spec(environment_variables=(("A;B", "1"),)))
    with pytest.raises(SpecError, match="set by cade"):
        context_for(make_spec(environment_variables=(("CADE_SEED", "1"),)))
    with pytest.raises(SpecError, match="several lines"):
        context_for(make_spec(), "slurm", ("--comment=x\ntouch canary",))


def test_job_name() -> None:
    assert render.job_name(4, 2, 1) == "cade-4-2-1"
    with pytest.raises(SpecError):
        render.job_name("a b", 1, 1)


def test_job_names_of_two_ledgers_differ(tmp_path: Path) -> None:
    """Experiment 1 of two project directories: a driver must never adopt the other's job."""
    one = render.job_name(1, 2, 3, tmp_path / "a" / ".cade" / "experiments" / "1")
    two = render.job_name(1, 2, 3, tmp_path / "b" / ".cade" / "experiments" / "1")
    assert one.startswith("cade-1-2-3-") and two.startswith("cade-1-2-3-") and one != two
    assert one == render.job_name(1, 2, 3, tmp_path / "a" / ".cade" / "experiments" / "1")


def test_site_template_overrides_and_extends_builtin(tmp_path: Path) -> None:
    (tmp_path / "slurm.sbatch.j2").write_text(
        '{% extends "builtin:slurm.sbatch.j2" %}\n'
        "{% block setup %}\nmodule load cuda/12 # site\n{% endblock %}\n"
    )
    text = render.render_script("slurm.sbatch.j2", context_for(make_spec(), "slurm", ("--nodes=1",)),
                                [tmp_path])
    assert "module load cuda/12 # site" in text
    assert "#SBATCH --nodes=1" in text
    assert text.index("module load") < text.index("cd '/work dir'")
    # without the site directory the built-in renders unchanged
    plain = render.render_script("slurm.sbatch.j2", context_for(make_spec(), "slurm", ("--nodes=1",)))
    assert "module load" not in plain


def test_site_base_applies_to_every_builtin_backend(tmp_path: Path) -> None:
    (tmp_path / "base.sh.j2").write_text(
        '{% extends "builtin:base.sh.j2" %}\n{% block setup %}\nsource /site/env.sh\n{% endblock %}\n'
    )
    for backend, template in render.TEMPLATE_FOR_BACKEND.items():
        text = render.render_script(template, context_for(make_spec(), backend), [tmp_path])
        assert "source /site/env.sh" in text


def test_site_template_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "local.sh.j2").write_text("#!/bin/bash\n\necho {{ no_such_value|q }}\n")
    with pytest.raises(SpecError) as caught:
        render.render_script("local.sh.j2", context_for(make_spec()), [tmp_path])
    assert f"{tmp_path / 'local.sh.j2'}:3" in caught.value.message
    assert "no_such_value" in caught.value.message

    (tmp_path / "local.sh.j2").write_text("#!/bin/bash\n{% if %}\n")
    with pytest.raises(SpecError) as caught:
        render.render_script("local.sh.j2", context_for(make_spec()), [tmp_path])
    assert f"{tmp_path / 'local.sh.j2'}:2" in caught.value.message

    (tmp_path / "local.sh.j2").write_text('{% extends "missing.j2" %}\n')
    with pytest.raises(SpecError, match="missing.j2"):
        render.render_script("local.sh.j2", context_for(make_spec()), [tmp_path])


def test_list_templates_and_source(tmp_path: Path) -> None:
    builtins = {t.name for t in render.list_templates() if t.origin == "builtin"}
    assert builtins >= {"base.sh.j2", "local.sh.j2", "slurm.sbatch.j2", "pbs.pbs.j2"}
    (tmp_path / "pbs.pbs.j2").write_text("site")
    listed = render.list_templates([tmp_path])
    assert listed[0].name == "pbs.pbs.j2" and listed[0].origin == "site"
    shadowed = [t for t in listed if t.name == "pbs.pbs.j2" and t.origin == "builtin"]
    assert shadowed and shadowed[0].shadowed
    assert render.template_source("pbs.pbs.j2", [tmp_path])[0] == "site"
    assert "#PBS" in render.template_source("builtin:pbs.pbs.j2", [tmp_path])[0]
    with pytest.raises(SpecError):
        render.template_source("nope.j2")


def test_every_templated_expression_is_quoted() -> None:
    """Guard for new template code: `{{ x }}` without |q or |qargs only where proven safe."""
    import re

    # env names are validated; directives come pre-quoted; site_setup is shell code by
    # design: the site's own `setup` block, already rendered (its values through |q)
    safe = {"name", "directive", "site_setup"}
    for path in render.builtin_template_dir().glob("*.j2"):
        for expression in re.findall(r"{{(.*?)}}", path.read_text()):
            expression = expression.strip()
            assert expression.endswith(("|q", "|qargs")) or expression in safe, (path.name, expression)


def _local_job(tmp_path: Path, entrypoint: tuple[str, ...]) -> tuple[subprocess.Popen[str], Path]:
    """The local job script of a one-segment trial running `entrypoint`, started."""
    from cade_cli.jobs import rundir

    spec = make_spec(entrypoint=entrypoint, workdir=str(tmp_path),
                     resources=ResourcesSpec(launcher="none"))
    paths = rundir.prepare_segment(
        spec=spec, experiment_id=1, trial_id=1, segment=1, params={}, start_length=0,
        target_length=100000, report_at=[], resume_from=None, trial_seed=1, backend="local",
        exp_root=tmp_path / "exp",
    )
    launcher = paths.run_dir / "launch" / "none.sh"
    if not launcher.exists():
        launcher.write_text('#!/bin/sh\nexec "$@"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADE_")}
    env.update(SYNTH_STEP_SECONDS="0.01", CADE_CONTROL_POLL_SECONDS="0")
    job = subprocess.Popen(["bash", str(paths.script)], cwd=paths.run_dir, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return job, paths.run_dir


def _wait_for(job: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        assert time.monotonic() < deadline and job.poll() is None, job.stderr.read() if job.stderr else ""
        time.sleep(0.05)


def test_local_script_forwards_stop_signal_and_records_exit(tmp_path: Path) -> None:
    """USR1 to the batch shell reaches the trial, which checkpoints; exit_code is written."""
    trainer = Path(__file__).resolve().parents[1] / "examples" / "synthetic" / "train.py"
    job, run_dir = _local_job(tmp_path, (sys.executable, str(trainer)))
    metrics = run_dir / "metrics.jsonl"
    _wait_for(job, lambda: metrics.exists() and '"training"' in metrics.read_text())
    job.send_signal(signal.SIGUSR1)
    _, err = job.communicate(timeout=30)
    assert job.returncode == 0, err
    assert (run_dir / "exit_code").read_text().strip() == "0"
    assert (run_dir / "preempted").read_text().startswith("SIGUSR1")
    assert (run_dir / "started").exists()
    kinds = [line.split('"kind": "')[1].split('"')[0] for line in metrics.read_text().splitlines()]
    assert kinds[-3:] == ["validation", "checkpoint", "segment_end"]


def test_a_notice_that_kills_a_trainer_still_starting_marks_a_preemption(tmp_path: Path) -> None:
    """A trainer the notice reaches before its handler is in place dies of USR1; the job
    script marks the segment preempted, so the driver resumes it instead of counting a
    failure against max_restarts."""
    job, run_dir = _local_job(tmp_path, ("sleep", "60"))   # no USR1 handler: dies of it
    _wait_for(job, lambda: (run_dir / "started").exists())
    job.send_signal(signal.SIGUSR1)
    job.communicate(timeout=30)
    assert (run_dir / "exit_code").read_text().strip() == str(128 + signal.SIGUSR1)
    assert (run_dir / "preempted").read_text().endswith("(job script)\n")


def test_templates_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cade_cli.cli import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["templates", "list"])
    assert listed.exit_code == 0 and "slurm.sbatch.j2    builtin" in listed.output
    shown = runner.invoke(cli, ["templates", "show", "builtin:local.sh.j2"])
    assert shown.exit_code == 0 and 'extends "base.sh.j2"' in shown.output
    missing = runner.invoke(cli, ["templates", "show", "nope.j2"])
    assert missing.exit_code == 2 and "no job script template named 'nope.j2'" in missing.output

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nentrypoint: python3 train.py --x '$(y)'\nhyperparameters: {lr: 0.1}\n"
                    "searcher: {name: single, metric: loss, max_length: {batches: 5}}\n"
                    "resources: {slots_per_trial: 2, launcher: torch}\n")
    rendered = runner.invoke(cli, ["templates", "render", str(spec), "--backend", "local"])
    assert rendered.exit_code == 0, rendered.output
    assert rendered.output.startswith("#!/bin/bash\n")
    assert "launch/torch.sh python3 train.py --x '$(y)'" in rendered.output
    assert "export CADE_NPROCS=2" in rendered.output
