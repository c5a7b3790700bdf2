"""Rendered job scripts for every template x launcher, compared with tests/golden/.

Regenerate after an intended template change: `pytest tests/test_golden.py --update-golden`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cade_cli.jobs import render
from cade_cli.search.space import Nested
from cade_cli.spec.experiment import ExperimentSpec, ResourcesSpec, SearcherSpec

GOLDEN = Path(__file__).parent / "golden"
FAKE_DIRECTIVES = {
    "local": [],
    "slurm": ["--job-name=cade-7-3-2", "--nodes=2", "--ntasks-per-node=2", "--signal=B:USR1@120"],
    "pbs": ["-N cade-7-3-2", "-l select=2:ncpus=2:mpiprocs=2", "-l walltime=01:00:00"],
}
CASES = [
    (backend, launcher, slots)
    for backend in render.TEMPLATE_FOR_BACKEND
    for launcher in render.LAUNCHERS
    for slots in ((1, 4) if launcher == "none" else (4,))
]


def golden_spec(launcher: str, slots: int) -> ExperimentSpec:
    return ExperimentSpec(
        name="golden",
        entrypoint=("python3", "train.py", "--epochs", "3"),
        hyperparameters=Nested(()),
        searcher=SearcherSpec(name="single", metric="loss", max_length=100),
        resources=ResourcesSpec(slots_per_trial=slots, slots_per_node=min(slots, 2), launcher=launcher),
        environment_variables=(("OMP_NUM_THREADS", "1"), ("DATA", "/scratch/my data")),
        workdir="/home/user/project",
    )


def render_case(backend: str, launcher: str, slots: int) -> str:
    spec = golden_spec(launcher, slots)
    root = Path("/scratch/.cade/experiments/7")
    cade_env = render.cade_environment(
        spec,
        backend=backend,
        experiment_id=7,
        trial_id=3,
        segment=2,
        run_dir=root / "trials/3/segments/2",
        trial_dir=root / "trials/3",
        start_length=50,
        target_length=100,
        report_at=[50, 100],
        resume_from=root / "trials/3/checkpoints/50",
        trial_seed=1234,
    )
    context = render.build_context(
        spec, backend=backend, job_name="cade-7-3-2", cade_env=cade_env,
        directives=FAKE_DIRECTIVES[backend],
    )
    return render.render_script(render.TEMPLATE_FOR_BACKEND[backend], context)


@pytest.mark.parametrize(("backend", "launcher", "slots"), CASES)
def test_rendered_script_matches_golden(
    backend: str, launcher: str, slots: int, update_golden: bool, tmp_path: Path
) -> None:
    text = render_case(backend, launcher, slots)
    golden = GOLDEN / f"{backend}-{launcher}-{slots}.sh"
    if update_golden:
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run pytest --update-golden"
    assert text == golden.read_text()
    script = tmp_path / "job.sh"
    script.write_text(text)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_every_golden_file_belongs_to_a_case() -> None:
    expected = {f"{b}-{l}-{s}.sh" for b, l, s in CASES}
    assert {p.name for p in GOLDEN.glob("*.sh")} <= expected
