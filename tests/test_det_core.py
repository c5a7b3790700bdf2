"""Determined's Core API under cade: real scripts importing `determined` through the shim,
run as a cade job would run them (a segment's CADE_* variables, real files, real ranks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cade_cli.det import core
from cade_cli.det._unsupported import UnsupportedCall
from cade_cli.jobs import rundir

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "cade_cli" / "det" / "shim"
SPAWN = ROOT / "launchers" / "cade_spawn.py"

CALLS = r'''
import json, os, sys
import determined as det
from determined.core import PreemptMode

info = det.get_cluster_info()
out = {"trial": info.trial.trial_id, "exp": info.trial.experiment_id, "hp": info.trial.hparams,
       "latest": info.latest_checkpoint, "addrs": info.container_addrs,
       "rank": info.container_rank, "slots": info.slot_ids, "user": info.user_data,
       "type": info.task_type, "log_format": det.LOG_FORMAT}
with det.core.init(preempt_mode=PreemptMode.WorkersAskChief) as ctx:
    ops = []
    for op in ctx.searcher.operations():
        ctx.train.report_training_metrics(op.length, {"loss": 2.0})
        ctx.train.report_metrics("inference", op.length, {"latency": 3.0})
        ctx.train.report_progress(0.5)
        op.report_progress(op.length)
        with ctx.checkpoint.store_path({"steps_completed": op.length, "note": "x"}) as (p, sid):
            (p / "weights.txt").write_text("w")
        out["sid"] = sid
        out["meta"] = ctx.checkpoint.get_metadata(sid)
        with ctx.checkpoint.restore_path(sid) as p:
            out["restored"] = (p / "weights.txt").read_text()
        ctx.checkpoint.download(sid, "copy", selector=lambda name: name.endswith(".txt"))
        out["downloaded"] = sorted(os.listdir("copy"))
        up = ctx.checkpoint.upload("copy", {"steps_completed": op.length + 1})
        ctx.checkpoint.delete(up, globs=["*.txt"])
        out["after_delete"] = sorted(os.listdir(up))
        ctx.checkpoint.delete(up)
        out["deleted"] = not os.path.exists(up)
        out["tb"] = str(ctx.train.get_tensorboard_path())
        ctx.train.upload_tensorboard_files()
        ctx.alert(title="halfway", description="all is well")
        op.report_completed(1.5)
        ops.append(op.length)
    out["ops"] = ops
    out["preempt"] = ctx.preempt.should_preempt()
    try:
        ctx.train.get_experiment_best_validation()
    except det.UnsupportedCall as error:
        out["unsupported"] = str(error)
print(json.dumps(out))
'''


def segment(root: Path, *, target: int, resume: Path | None = None, metric: str = "loss",
            **extra: str) -> dict[str, str]:
    trial_dir = root / "trials" / "4"
    run_dir = trial_dir / "segments" / "1"
    run_dir.mkdir(parents=True)
    rundir.write_json_atomic(trial_dir / "params.json",
                             {"params": {"lr": 0.5}, "trial": 4, "experiment": 9,
                              "experiment_config": {"data": {"url": "u"}, "records_per_epoch": 60}})
    rundir.write_control(run_dir, stop=False, reason="", target_length=target)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CADE_", "SLURM_", "PBS_", "HOROVOD_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(
        CADE_EXPERIMENT_ID="9", CADE_TRIAL_ID="4", CADE_SEGMENT="1", CADE_RUN_DIR=str(run_dir),
        CADE_TRIAL_DIR=str(trial_dir), CADE_PARAMS_FILE=str(trial_dir / "params.json"),
        CADE_START_LENGTH="0", CADE_TARGET_LENGTH=str(target), CADE_LENGTH_UNIT="batches",
        CADE_RESUME_FROM=str(resume or ""), CADE_METRIC=metric, CADE_SEED="3",
        CADE_TASKS_PER_NODE="1", CADE_CONTROL_POLL_SECONDS="0",
        PYTHONPATH=os.pathsep.join([str(SHIM), str(ROOT)]),
    )
    env.update(extra)
    return env


def run_script(tmp_path: Path, text: str, env: dict[str, str],
               command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(text)
    return subprocess.run([*(command or []), sys.executable, str(script)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


def lines(env: dict[str, str]) -> list[dict]:
    text = (Path(env["CADE_RUN_DIR"]) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_every_core_call_maps_onto_the_trial_files(tmp_path: Path) -> None:
    env = segment(tmp_path, target=20)
    done = run_script(tmp_path, CALLS, env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    trial_dir = Path(env["CADE_TRIAL_DIR"])
    assert (out["trial"], out["exp"], out["hp"], out["latest"]) == (4, 9, {"lr": 0.5}, None)
    assert (out["addrs"], out["rank"], out["slots"]) == (["127.0.0.1"], 0, [0])
    assert (out["user"], out["type"]) == ({"url": "u"}, "TRIAL")
    assert "%(message)s" in out["log_format"]
    assert out["ops"] == [20] and out["preempt"] is False
    assert out["sid"] == str(trial_dir / "checkpoints" / "20")
    assert out["meta"] == {"steps_completed": 20, "note": "x"}
    assert out["restored"] == "w" and out["downloaded"] == ["weights.txt"]
    assert out["after_delete"] == ["cade_checkpoint.json", "metadata.json"] and out["deleted"]
    assert out["tb"] == str(trial_dir / "tensorboard")
    assert "get_experiment_best_validation" in out["unsupported"] and "cade best" in \
        out["unsupported"]
    assert "alert [warning]" in done.stderr and "halfway: all is well" in done.stderr
    rows = lines(env)
    assert [r["kind"] for r in rows] == ["training", "training", "checkpoint", "checkpoint",
                                         "validation", "segment_end"]
    assert rows[1]["metrics"] == {"inference/latency": 3.0}
    assert rows[4] == {**rows[4], "length": 20, "metrics": {"loss": 1.5}}
    progress = json.loads((Path(env["CADE_RUN_DIR"]) / "progress.json").read_text())
    assert progress["progress"] == 1.0


def test_searcher_operations_follow_a_raised_target(tmp_path: Path) -> None:
    """A promotion while the trial waits is the next operation, as the driver raises it."""
    env = segment(tmp_path, target=10, CADE_DECISION_WAIT="20")
    script = ("import determined as det\n"
              "with det.core.init() as ctx:\n"
              "    for op in ctx.searcher.operations():\n"
              "        ctx.train.report_validation_metrics(op.length, {'loss': 1.0 / op.length})\n"
              "        print('op', op.length, flush=True)\n"
              "        op.report_completed(1.0 / op.length)\n")
    (tmp_path / "script.py").write_text(script)
    child = subprocess.Popen([sys.executable, "script.py"], env=env, cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "op 10"
    rundir.write_control(Path(env["CADE_RUN_DIR"]), stop=False, reason="", target_length=30)
    assert child.stdout.readline().strip() == "op 30"
    rundir.write_control(Path(env["CADE_RUN_DIR"]), stop=True, reason="done", target_length=30)
    assert child.wait(timeout=60) == 0, child.stderr.read() if child.stderr else ""
    validations = [r["length"] for r in lines(env) if r["kind"] == "validation"]
    assert validations == [10, 30]   # report_completed added none: the metric was reported


def test_should_preempt_answers_the_preemption_signal(tmp_path: Path) -> None:
    env = segment(tmp_path, target=10)
    script = ("import time, determined as det\n"
              "with det.core.init() as ctx:\n"
              "    print('ready', flush=True)\n"
              "    while not ctx.preempt.should_preempt():\n"
              "        time.sleep(0.05)\n"
              "    print('preempted', flush=True)\n")
    (tmp_path / "script.py").write_text(script)
    child = subprocess.Popen([sys.executable, "script.py"], env=env, cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGUSR1)
    assert child.wait(timeout=60) == 0
    assert child.stdout.read().strip() == "preempted"
    assert (Path(env["CADE_RUN_DIR"]) / "preempted").read_text().startswith("SIGUSR1")


def test_should_preempt_answers_the_searchers_stop(tmp_path: Path) -> None:
    env = segment(tmp_path, target=10)
    rundir.write_control(Path(env["CADE_RUN_DIR"]), stop=True, reason="pruned", target_length=10)
    done = run_script(tmp_path, "import determined as det\n"
                      "print(det.core.init().preempt.should_preempt())\n", env)
    assert done.stdout.strip() == "True", done.stderr


COLLECTIVES = r'''
import json, os, sys
import determined as det
with det.core.init() as ctx:
    d = ctx.distributed
    out = {"rank": d.rank, "size": d.size, "local": [d.local_rank, d.local_size],
           "cross": [d.cross_rank, d.cross_size], "allgather": d.allgather(d.rank * 10),
           "gather": d.gather(d.rank), "broadcast": d.broadcast(f"from {d.rank}"),
           "allgather_local": d.allgather_local(d.local_rank),
           "gather_local": d.gather_local(d.local_rank),
           "broadcast_local": d.broadcast_local(d.local_rank + 100),
           "preempt": ctx.preempt.should_preempt()}
    for op in ctx.searcher.operations():
        out["op"] = op.length
        if d.rank == 0:
            op.report_completed(0.0)
    with ctx.checkpoint.store_path({"steps_completed": 5, f"r{d.rank}": 1}, shard=True) as (p, s):
        (p / f"rank{d.rank}").write_text("x")
    out["sid"] = s
# One write per line: the ranks share one pipe, and print() writes the newline apart.
sys.stdout.write("RESULT " + json.dumps(out) + "\n")
sys.stdout.flush()
'''


def test_collectives_among_three_ranks(tmp_path: Path) -> None:
    env = segment(tmp_path, target=7, CADE_LAUNCHER="torch")
    done = run_script(tmp_path, COLLECTIVES, env,
                      command=[sys.executable, str(SPAWN), "torch", "3", "--"])
    assert done.returncode == 0, done.stderr
    results = sorted((json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                      if line.startswith("RESULT ")), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1, 2]
    for r in results:
        assert r["size"] == 3 and r["local"][1] == 3 and r["cross"] == [0, 1]
        assert r["allgather"] == [0, 10, 20] and r["allgather_local"] == [0, 1, 2]
        assert r["broadcast"] == "from 0" and r["broadcast_local"] == 100
        assert r["op"] == 7 and r["preempt"] is False
    assert results[0]["gather"] == [0, 1, 2] and results[1]["gather"] is None
    assert results[0]["gather_local"] == [0, 1, 2] and results[2]["gather_local"] is None
    checkpoint = Path(results[0]["sid"])
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "cade_checkpoint.json", "metadata.json", "rank0", "rank1", "rank2"]
    assert json.loads((checkpoint / "metadata.json").read_text()) == {
        "steps_completed": 5, "r0": 1, "r1": 1, "r2": 1}


def test_run_by_hand_keeps_checkpoints_and_resumes(tmp_path: Path) -> None:
    script = tmp_path / "stage.py"
    script.write_text("import determined as det\n"
                      "info = det.get_cluster_info()\n"
                      "print('latest', info.latest_checkpoint, info.trial.hparams)\n"
                      "with det.core.init() as ctx:\n"
                      "    with ctx.checkpoint.store_path({'steps_completed': 3}) as (p, s):\n"
                      "        (p / 'w').write_text('1')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cade_cli.det", "run", str(script), "--hparams",
               '{"lr": 1}', "--dir", str(tmp_path / "trial")]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert first.stdout.strip() == "latest None {'lr': 1}", first.stderr
    assert second.stdout.strip() == f"latest {tmp_path / 'trial' / 'checkpoints' / '3'} {{'lr': 1}}"


def test_unsupported_calls_name_the_call_and_the_way_out() -> None:
    with pytest.raises(UnsupportedCall, match=r"core.init\(master=...\).*core.init takes"):
        core.init(master="http://x")
    with pytest.raises(UnsupportedCall, match="from_deepspeed.*from_torch_distributed"):
        core.DistributedContext.from_deepspeed()
    with pytest.raises(ValueError, match="chief_ip"):
        core.DistributedContext(rank=0, size=4, local_rank=0, local_size=2, cross_rank=0,
                                cross_size=2)


def test_the_shim_refuses_what_cade_does_not_offer(tmp_path: Path) -> None:
    env = segment(tmp_path, target=1)
    done = run_script(tmp_path, "import determined\ndeterminedkeras = determined.keras\n", env)
    assert done.returncode != 0
    assert "determined.keras is not supported under cade" in done.stderr


def test_real_determined_steps_aside_when_asked(tmp_path: Path) -> None:
    """The job script's PYTHONPATH line: the shim comes first unless CADE_DETERMINED=real."""
    fake = tmp_path / "site" / "determined"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\n")
    line = ('if [ "${CADE_DETERMINED:-}" != real ]; then '
            f'export PYTHONPATH={SHIM}${{PYTHONPATH:+:$PYTHONPATH}}; fi; '
            f'{sys.executable} -c "import determined; print(getattr(determined, \'REAL\', False))"')
    base = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path / 'site'}"}
    shim = subprocess.run(["bash", "-c", line], env=base, capture_output=True, text=True, check=False)
    real = subprocess.run(["bash", "-c", line], env={**base, "CADE_DETERMINED": "real"},
                          capture_output=True, text=True, check=False)
    assert (shim.stdout.strip(), real.stdout.strip()) == ("False", "True")
    template = (ROOT / "templates" / "base.sh.j2").read_text()
    assert 'if [ "${CADE_DETERMINED:-}" != real ]; then' in template


def test_workers_started_by_determineds_launch_module(tmp_path: Path) -> None:
    """`python -m determined.launch.torch_distributed` starts this node's workers with ranks."""
    env = segment(tmp_path, target=7, CADE_LAUNCHER="none")
    done = run_script(tmp_path, COLLECTIVES, env, command=[
        sys.executable, "-m", "determined.launch.torch_distributed", "--nproc-per-node", "2"])
    assert done.returncode == 0, done.stderr
    results = sorted((json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                      if line.startswith("RESULT ")), key=lambda r: r["rank"])
    assert [(r["rank"], r["size"], r["allgather"]) for r in results] == [
        (0, 2, [0, 10]), (1, 2, [0, 10])]
    assert results[0]["op"] == results[1]["op"] == 7


def test_a_validation_without_the_searcher_metric_waits_for_report_completed(
        tmp_path: Path) -> None:
    env = segment(tmp_path, target=10)
    done = run_script(tmp_path, "import determined as det\n"
                      "with det.core.init() as ctx:\n"
                      "    ctx.train.report_validation_metrics(5, {'accuracy': 0.5})\n"
                      "    for op in ctx.searcher.operations():\n"
                      "        ctx.train.report_validation_metrics(op.length, {'accuracy': 0.9})\n"
                      "        op.report_completed(0.25)\n", env)
    assert done.returncode == 0, done.stderr
    rows = [(r["kind"], r["length"], r.get("metrics")) for r in lines(env)]
    assert rows == [("validation", 10, {"accuracy": 0.9, "loss": 0.25}),
                    ("training", 5, {"validation/accuracy": 0.5}), ("segment_end", 10, None)]


def test_distributed_context_from_horovod(tmp_path: Path) -> None:
    from slurm_fixtures import require_horovod

    require_horovod()
    env = segment(tmp_path, target=3, CADE_LAUNCHER="horovod")
    script = ("import json, sys\n"
              "import horovod.torch as hvd\n"
              "import determined as det\n"
              "hvd.init()\n"
              "d = det.core.DistributedContext.from_horovod(hvd)\n"
              "with det.core.init(distributed=d) as ctx:\n"
              "    got = [d.rank, d.size, d.cross_size, d.allgather(d.rank + 1)]\n"
              "    sys.stdout.write('RESULT ' + json.dumps(got) + '\\n')\n")
    done = run_script(tmp_path, script, env,
                      command=[sys.executable, str(SPAWN), "horovod", "2", "--"])
    assert done.returncode == 0, done.stderr
    results = sorted(json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                     if line.startswith("RESULT "))
    assert results == [[0, 2, 1, [1, 2]], [1, 2, 1, [1, 2]]]


def test_outside_cade_checkpoints_go_to_checkpoint_storage(tmp_path: Path) -> None:
    env = {k: v for k, v in segment(tmp_path / "x", target=1).items()
           if not k.startswith("CADE_")}
    script = ("import determined as det\n"
              "assert det.get_cluster_info() is None\n"
              f"storage = {{'host_path': {str(tmp_path)!r}, 'storage_path': 'ckpts'}}\n"
              "with det.core.init(checkpoint_storage=storage) as ctx:\n"
              "    with ctx.checkpoint.store_path({'steps_completed': 2}) as (p, sid):\n"
              "        (p / 'w').write_text('1')\n"
              "    print(sid, ctx.checkpoint.get_metadata(sid))\n")
    done = run_script(tmp_path, script, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{tmp_path / 'ckpts' / '2'} {{'steps_completed': 2}}"
    assert (tmp_path / "ckpts" / "2" / "w").read_text() == "1"


@pytest.mark.parametrize("how", ["raise det.InvalidHP('lr too large')",
                                 ("ctx.train.report_early_exit("
                                 "det.core.EarlyExitReason.INVALID_HP)")])
def test_invalid_hyperparameters_end_the_trial_with_status_0(tmp_path: Path, how: str) -> None:
    env = segment(tmp_path, target=1)
    done = run_script(tmp_path, f"import determined as det\n"
                      f"with det.core.init() as ctx:\n    {how}\n", env)
    assert done.returncode == 0, done.stderr
    (row,) = [r for r in lines(env) if r["kind"] == "invalid_hp"]
    assert row["message"] in ("lr too large", "the trial reported invalid hyperparameters")
