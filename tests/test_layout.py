"""One layout (slots -> nodes, tasks, ranks) for the directives, the CADE_* variables and srun.

The case that once disagreed: `slots_per_trial: 8` on nodes of 4 (`slurm.slots_per_node` /
`pbs.slots_per_node`). Rendered for Slurm and PBS, refused at load time when the node size
does not divide the slots, and run for real on two emulated Slurm nodes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from slurm_fixtures import cade_json, require_slurm, scontrol_fields, segments

from cade_cli.engine.dryrun import dry_run_script
from cade_cli.errors import SpecError
from cade_cli.jobs.layout import Layout, split_slots, trial_layout
from cade_cli.spec.experiment import load_spec, parse_spec
from cade_cli.spec.settings import Settings

EIGHT_ON_FOURS = """\
name: eight-on-fours
entrypoint: python3 trial.py
searcher: {name: single, metric: loss, max_length: {batches: 3}}
resources:
  slots_per_trial: 8
  slot_type: SLOT_TYPE
  launcher: torch
slurm:
  slots_per_node: 4
pbs:
  slots_per_node: 4
"""


def eight_on_fours(slot_type: str = "cpu") -> str:
    return EIGHT_ON_FOURS.replace("SLOT_TYPE", slot_type)


def exported(script: str) -> dict[str, str]:
    return dict(re.findall(r"^export (CADE_\w+)=(\S*)$", script, re.MULTILINE))


def test_split_slots() -> None:
    assert split_slots(8, 4) == (2, 4)
    assert split_slots(8, None) == (1, 8)
    assert split_slots(2, 4) == (1, 2)        # a larger node holds the whole trial
    with pytest.raises(SpecError, match="not a multiple"):
        split_slots(8, 3)


def test_the_backend_node_size_decides_the_layout() -> None:
    spec = parse_spec(eight_on_fours("gpu"))
    assert trial_layout(spec, "slurm") == Layout(nodes=2, tasks_per_node=4, ranks=8,
                                                 ranks_per_node=4, gpus_per_node=4)
    assert trial_layout(spec, "pbs") == trial_layout(spec, "slurm")
    # The local backend has no node size of its own: one machine runs all eight.
    assert trial_layout(spec, "local") == Layout(1, 8, 8, 8, 8)


def test_slurm_directives_variables_and_srun_agree() -> None:
    script = dry_run_script(parse_spec(eight_on_fours("gpu")), "slurm", Settings())
    directives = re.findall(r"^#SBATCH (\S+)$", script, re.MULTILINE)
    assert "--nodes=2" in directives and "--ntasks-per-node=4" in directives
    assert "--gpus-per-node=4" in directives
    env = exported(script)
    assert (env["CADE_NODES"], env["CADE_TASKS_PER_NODE"], env["CADE_NPROCS"]) == ("2", "4", "8")
    assert "exec srun --kill-on-bad-exit=1 --nodes=2 --ntasks=8 " in script


def test_pbs_directives_variables_and_launch_agree() -> None:
    script = dry_run_script(parse_spec(eight_on_fours("gpu")), "pbs", Settings())
    directives = re.findall(r"^#PBS (.+)$", script, re.MULTILINE)
    assert "-l select=2:ncpus=4:ngpus=4:mpiprocs=4" in directives
    assert "-l place=scatter" in directives
    env = exported(script)
    assert (env["CADE_NODES"], env["CADE_TASKS_PER_NODE"], env["CADE_NPROCS"]) == ("2", "4", "8")
    assert "exec mpiexec -n 8 " in script


@pytest.mark.parametrize("section", ["slurm", "pbs"])
def test_a_node_size_that_does_not_divide_the_slots_is_refused_with_file_and_line(
        tmp_path: Path, section: str) -> None:
    path = tmp_path / "spec.yaml"
    text = eight_on_fours().replace(f"{section}:\n  slots_per_node: 4",
                                    f"{section}:\n  slots_per_node: 3")
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row == "  slots_per_node: 3")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert f"spec.yaml:{line}: {section}.slots_per_node: expected a divisor of " \
           "resources.slots_per_trial (8)" in str(caught.value)


def test_a_node_larger_than_the_trial_is_accepted() -> None:
    spec = parse_spec(eight_on_fours().replace("slots_per_node: 4", "slots_per_node: 16"))
    assert trial_layout(spec, "slurm").nodes == 1 and trial_layout(spec, "pbs").nodes == 1


# -- on the test Slurm cluster: 2 emulated nodes x 4 tasks ---------------------------------

RANK_PROBE = """\
import json, os
from pathlib import Path
from cade_cli import report

names = ("CADE_NODES", "CADE_TASKS_PER_NODE", "CADE_NPROCS", "RANK", "WORLD_SIZE",
         "LOCAL_RANK", "NODE_RANK", "SLURM_NODEID", "SLURMD_NODENAME")
seen = {name: os.environ.get(name) for name in names}
Path(os.environ["CADE_RUN_DIR"], f"rank-{seen['RANK']}.json").write_text(json.dumps(seen))
target = report.target_length()
report.report_validation(target, {"loss": 1.0})
"""


@pytest.mark.slurm
def test_eight_slots_run_as_two_nodes_of_four_on_slurm(tmp_path: Path) -> None:
    require_slurm()
    (tmp_path / "spec.yaml").write_text(eight_on_fours())
    (tmp_path / "trial.py").write_text(RANK_PROBE)
    answer = cade_json(tmp_path, "submit", str(tmp_path / "spec.yaml"), "--scheduler", "slurm",
                       "--json", timeout=300)
    assert answer["state"] == "completed", answer
    (seg,) = segments(tmp_path, answer["experiment"], 1)
    job = scontrol_fields(seg.job_id or "")
    assert job["NumNodes"] == "2" and job["NumTasks"] == "8", job
    ranks = [json.loads(path.read_text()) for path in sorted(Path(seg.run_dir).glob("rank-*.json"))]
    assert sorted(int(r["RANK"]) for r in ranks) == list(range(8))
    for seen in ranks:
        assert (seen["CADE_NODES"], seen["CADE_TASKS_PER_NODE"], seen["CADE_NPROCS"]) == ("2", "4", "8")
        assert seen["WORLD_SIZE"] == "8"
        # Ranks fill node 0 first, four per node.
        assert int(seen["NODE_RANK"]) == int(seen["SLURM_NODEID"]) == int(seen["RANK"]) // 4
        assert int(seen["LOCAL_RANK"]) == int(seen["RANK"]) % 4
    assert len({seen["SLURMD_NODENAME"] for seen in ranks}) == 2
