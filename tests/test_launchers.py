"""The node-side launchers: the pure rank mapping on recorded environments, then real sh runs."""

from __future__ import annotations

import errno
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cade_cli.launchers import cade_env
from cade_cli.launchers import cade_spawn as spawn
from cade_cli.launchers.cade_env import LaunchEnvError, Placement

LAUNCHERS = Path(str(importlib.resources.files("cade_cli.launchers")))
SHELLS = [shell for shell in ("dash", "bash") if shutil.which(shell)]

# srun -N2 -n4 on the test cluster (values as Slurm 22.05 set them for each task).
SLURM_JOB = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_NNODES": "2",
             "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_JOB_NODELIST": "node[1-2]"}
SLURM_TASKS = [
    dict(SLURM_JOB, SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURMD_NODENAME="node1"),
    dict(SLURM_JOB, SLURM_PROCID="1", SLURM_LOCALID="1", SLURM_NODEID="0", SLURMD_NODENAME="node1"),
    dict(SLURM_JOB, SLURM_PROCID="2", SLURM_LOCALID="0", SLURM_NODEID="1", SLURMD_NODENAME="node2"),
    dict(SLURM_JOB, SLURM_PROCID="3", SLURM_LOCALID="1", SLURM_NODEID="1", SLURMD_NODENAME="node2"),
]


def no_scontrol(nodelist: str) -> str:
    return cade_env.expand_nodelist(nodelist)[0]


# -- node lists ------------------------------------------------------------------------------

@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("node1", ["node1"]),
    ("node[1-2,5]", ["node1", "node2", "node5"]),
    ("gpu[08-11]", ["gpu08", "gpu09", "gpu10", "gpu11"]),
    ("a01,b[1-2],c", ["a01", "b1", "b2", "c"]),
    ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
])
def test_expand_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert cade_env.expand_nodelist(nodelist) == hosts


def test_expand_tasks_per_node() -> None:
    assert cade_env.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert cade_env.expand_tasks_per_node("4") == [4]
    with pytest.raises(LaunchEnvError, match="tasks-per-node"):
        cade_env.expand_tasks_per_node("two")


# -- Slurm -----------------------------------------------------------------------------------

def test_slurm_tasks_map_to_torch_variables() -> None:
    variables = [cade_env.torch_variables(cade_env.slurm_placement(env, no_scontrol),
                                          cade_env.master_port(env, "4242"))
                 for env in SLURM_TASKS]
    assert [(v["RANK"], v["LOCAL_RANK"], v["NODE_RANK"]) for v in variables] == [
        ("0", "0", "0"), ("1", "1", "0"), ("2", "0", "1"), ("3", "1", "1")]
    assert {(v["WORLD_SIZE"], v["LOCAL_WORLD_SIZE"], v["MASTER_ADDR"], v["MASTER_PORT"])
            for v in variables} == {("4", "2", "node1", str(20000 + 4242))}


def test_slurm_tasks_map_to_horovod_variables() -> None:
    placements = [cade_env.slurm_placement(env, no_scontrol) for env in SLURM_TASKS]
    variables = [cade_env.horovod_variables(p, p.master_addr, 25000) for p in placements]
    assert [(v["HOROVOD_RANK"], v["HOROVOD_LOCAL_RANK"], v["HOROVOD_CROSS_RANK"],
             v["HOROVOD_HOSTNAME"]) for v in variables] == [
        ("0", "0", "0", "node1"), ("1", "1", "0", "node1"),
        ("2", "0", "1", "node2"), ("3", "1", "1", "node2")]
    for v in variables:
        assert (v["HOROVOD_SIZE"], v["HOROVOD_LOCAL_SIZE"], v["HOROVOD_CROSS_SIZE"]) == ("4", "2", "2")
        assert (v["HOROVOD_CONTROLLER"], v["HOROVOD_CPU_OPERATIONS"]) == ("gloo", "gloo")
        assert (v["HOROVOD_GLOO_RENDEZVOUS_ADDR"], v["HOROVOD_GLOO_RENDEZVOUS_PORT"]) == (
            "node1", "25000")


def test_uneven_slurm_layout_gives_horovod_cross_ranks_per_local_rank() -> None:
    # 3 tasks: two on node a, one on node b. Local rank 1 exists on node a only.
    job = {"SLURM_NTASKS": "3", "SLURM_TASKS_PER_NODE": "2,1", "SLURM_JOB_NODELIST": "a,b"}
    second_on_a = cade_env.slurm_placement(dict(job, SLURM_PROCID="1", SLURM_LOCALID="1",
                                                SLURM_NODEID="0"), no_scontrol)
    only_on_b = cade_env.slurm_placement(dict(job, SLURM_PROCID="2", SLURM_LOCALID="0",
                                              SLURM_NODEID="1"), no_scontrol)
    assert (second_on_a.cross_rank, second_on_a.cross_size, second_on_a.local_size) == (0, 1, 2)
    assert (only_on_b.cross_rank, only_on_b.cross_size, only_on_b.local_size) == (1, 2, 1)


def test_the_step_layout_wins_over_the_job_layout() -> None:
    env = dict(SLURM_TASKS[0], SLURM_STEP_TASKS_PER_NODE="1", SLURM_STEP_NODELIST="node7",
               SLURM_NTASKS="1")
    placement = cade_env.slurm_placement(env, no_scontrol)
    assert (placement.local_size, placement.num_nodes, placement.master_addr) == (1, 1, "node7")


@pytest.mark.parametrize(("missing", "message"), [
    ("SLURM_NTASKS", "SLURM_NTASKS or SLURM_NPROCS is not set"),
    ("SLURM_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE is not set"),
    ("SLURM_LOCALID", "SLURM_LOCALID is not set"),
])
def test_missing_slurm_variables_are_named(missing: str, message: str) -> None:
    env = {k: v for k, v in SLURM_TASKS[1].items() if k != missing}
    with pytest.raises(LaunchEnvError, match=message):
        cade_env.slurm_placement(env, no_scontrol)


def test_inconsistent_ranks_are_refused() -> None:
    with pytest.raises(LaunchEnvError, match="inconsistent ranks"):
        cade_env.slurm_placement(dict(SLURM_TASKS[0], SLURM_PROCID="9"), no_scontrol)


# -- PBS -------------------------------------------------------------------------------------

NODEFILE = "hostA.cluster\nhostA.cluster\nhostB.cluster\nhostB.cluster\n"


def pbs(env: dict[str, str]) -> Placement:
    return cade_env.pbs_placement(dict(env, PBS_NODEFILE="/var/spool/pbs/aux/77.srv",
                                       PBS_JOBID="77.srv"), lambda path: NODEFILE)


@pytest.mark.parametrize("rank_variable", ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PBS_VNODENUM"])
def test_pbs_ranks_follow_the_nodefile(rank_variable: str) -> None:
    placement = pbs({rank_variable: "3"})
    assert placement == Placement(rank=3, size=4, local_rank=1, local_size=2, node_rank=1,
                                  num_nodes=2, cross_rank=1, cross_size=2,
                                  master_addr="hostA.cluster", hostname="hostB.cluster",
                                  job_id="77.srv")
    assert cade_env.master_port({}, placement.job_id) == 20077


def test_pbs_with_more_ranks_than_nodefile_lines_uses_mpi_local_ranks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cade_env.socket, "gethostname", lambda: "hostB")
    placement = pbs({"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1",
                     "MPI_LOCALNRANKS": "4"})
    assert (placement.rank, placement.size, placement.local_rank, placement.local_size,
            placement.node_rank, placement.hostname) == (5, 8, 1, 4, 1, "hostB.cluster")


def test_scheduler_mode() -> None:
    assert cade_env.scheduler_mode(SLURM_TASKS[0]) == "slurm"
    assert cade_env.scheduler_mode({"PBS_NODEFILE": "f", "OMPI_COMM_WORLD_RANK": "0"}) == "pbs"
    assert cade_env.scheduler_mode({"PBS_NODEFILE": "f"}) == "local"  # the batch shell itself
    assert cade_env.scheduler_mode({"CADE_NPROCS": "2"}) == "local"


# -- ports -----------------------------------------------------------------------------------

def test_master_port_is_deterministic_high_and_overridable() -> None:
    ports = {cade_env.master_port({}, str(job)) for job in range(100000, 100050)}
    assert len(ports) == 50 and all(20000 <= p < 25000 for p in ports)
    assert cade_env.master_port({}, "abc") == cade_env.master_port({}, "abc")
    assert cade_env.master_port({"CADE_MASTER_PORT": "31337"}, "1") == 31337
    assert cade_env.rendezvous_port({}, "7") == 25007
    with pytest.raises(LaunchEnvError, match="CADE_MASTER_PORT"):
        cade_env.master_port({"CADE_MASTER_PORT": "80"}, "1")


def test_reserved_ports_keep_other_binds_out_and_let_a_rank_listen() -> None:
    held = cade_env.reserve_ports(cade_env.LOCAL_PORTS)
    try:
        ports = [sock.getsockname()[1] for sock in held]
        assert ports == list(range(ports[0], ports[0] + cade_env.LOCAL_PORTS))
        for port in ports:
            with socket.socket() as other, pytest.raises(OSError) as taken:
                other.bind(("127.0.0.1", port))
            assert taken.value.errno == errno.EADDRINUSE
            # Bound as torch's store or the det shim binds.
            with socket.create_server(("", port)) as rank, \
                    socket.create_connection(("127.0.0.1", port)):
                rank.accept()[0].close()
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("kind", ["torch", "horovod"])
def test_the_det_shims_ports_of_a_local_launch_are_in_the_held_block(kind: str) -> None:
    from cade_cli.det._distributed import from_environment

    port = 40000
    variables = spawn.rank_variables(kind, 1, 2, port)   # rank 1: builds its context, binds nothing
    context = from_environment(variables)
    assert context is not None
    shim_ports = [context._global.port, context._local.port]
    assert [port, *shim_ports] == list(range(port, port + cade_env.LOCAL_PORTS))


HOLDS_PORTS = """
import errno, os, socket
port = int(os.environ.get("MASTER_PORT") or os.environ["HOROVOD_GLOO_RENDEZVOUS_PORT"])
for p in range(port + 1, port + 3):
    try:
        socket.socket().bind(("127.0.0.1", p))
        print(p, "free")
    except OSError as e:
        print(p, "held" if e.errno == errno.EADDRINUSE else e)
"""


def test_local_ranks_find_the_ports_above_the_launch_port_held_for_them() -> None:
    result = run_launcher("sh", "torch.sh", [sys.executable, "-c", HOLDS_PORTS], {"CADE_NPROCS": "2"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    port = min(int(line.split()[0]) for line in lines) - 1
    assert sorted(lines) == sorted(2 * [f"{port + 1} held", f"{port + 2} held"])


# -- the command line and the sh launchers ---------------------------------------------------

def run_launcher(shell: str, launcher: str, args: list[str], env: dict[str, str],
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([shell, str(LAUNCHERS / launcher), *args], env=dict(base, **env),
                          check=False, capture_output=True, text=True, timeout=60, cwd=cwd)


PRINT_ENV = ("import os; print(' '.join(os.environ.get(k, '-') for k in ('RANK', 'WORLD_SIZE', "
             "'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')))")


@pytest.mark.parametrize("launcher", ["none.sh", "torch.sh", "horovod.sh", "common.sh"])
def test_launchers_parse_in_posix_sh(launcher: str) -> None:
    for shell in SHELLS:
        assert subprocess.run([shell, "-n", str(LAUNCHERS / launcher)], check=False).returncode == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_none_passes_arguments_through_unchanged(shell: str) -> None:
    result = run_launcher(shell, "none.sh", [sys.executable, "-c",
                                             "import sys; print(sys.argv[1:])", "a b", "'c'"], {})
    assert result.stdout == "['a b', \"'c'\"]\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_torch_launcher_maps_a_slurm_task(shell: str) -> None:
    result = run_launcher(shell, "torch.sh", [sys.executable, "-c", PRINT_ENV],
                          dict(SLURM_TASKS[3], SLURM_JOB_NODELIST="localhost,node2"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3 4 1 localhost 24242\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_torch_launcher_fails_with_5_on_a_broken_task_environment(shell: str) -> None:
    env = {k: v for k, v in SLURM_TASKS[0].items() if k != "SLURM_NTASKS"}
    result = run_launcher(shell, "torch.sh", [sys.executable, "-c", PRINT_ENV], env)
    assert result.returncode == 5
    assert "SLURM_NTASKS or SLURM_NPROCS is not set" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_torch_launcher_runs_local_ranks(shell: str) -> None:
    result = run_launcher(shell, "torch.sh", [sys.executable, "-c", PRINT_ENV],
                          {"CADE_NPROCS": "3", "CADE_MASTER_PORT": "23456"})
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        f"{rank} 3 {rank} 127.0.0.1 23456" for rank in range(3)]


def test_torch_launcher_single_local_rank_gets_a_free_port() -> None:
    result = run_launcher("sh", "torch.sh", [sys.executable, "-c", PRINT_ENV], {})
    rank, size, local, addr, port = result.stdout.split()
    assert (rank, size, local, addr) == ("0", "1", "0", "127.0.0.1") and int(port) > 1023


def test_a_failed_local_rank_fails_the_launch() -> None:
    script = "import os, sys; sys.exit(7 if os.environ['RANK'] == '1' else 0)"
    result = run_launcher("sh", "torch.sh", [sys.executable, "-c", script], {"CADE_NPROCS": "2"})
    assert result.returncode == 7
    assert "rank 1 failed with exit status 7" in result.stderr


def test_invalid_nprocs_and_missing_entrypoints_are_launch_errors() -> None:
    result = run_launcher("sh", "torch.sh", [sys.executable, "-c", "pass"], {"CADE_NPROCS": "x"})
    assert result.returncode == 5 and "CADE_NPROCS='x'" in result.stderr
    assert run_launcher("sh", "torch.sh", [], {}).returncode == 5
    missing = run_launcher("sh", "torch.sh", ["/nonexistent/tool"], {"CADE_NPROCS": "2"})
    assert missing.returncode == 127 and "cannot run /nonexistent/tool" in missing.stderr


WAIT_FOR_SIGNALS = """
import os, signal, sys, time
from pathlib import Path
got = []
def note(signum, frame):
    got.append(signal.Signals(signum).name)
    Path(f"{os.environ['RANK']}.{got[-1]}").write_text("x")
signal.signal(signal.SIGUSR1, note)
signal.signal(signal.SIGTERM, note)
Path(f"{os.environ['RANK']}.ready").write_text("x")
while "SIGTERM" not in got:
    time.sleep(0.05)
sys.exit(3)
"""


def test_local_ranks_get_usr1_and_term_sent_to_the_launcher_only(tmp_path: Path) -> None:
    env = dict(os.environ, CADE_NPROCS="2")
    launcher = subprocess.Popen(["sh", str(LAUNCHERS / "torch.sh"), sys.executable, "-c",
                                 WAIT_FOR_SIGNALS], cwd=tmp_path, env=env,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_for_files(tmp_path, ["0.ready", "1.ready"])
        launcher.send_signal(signal.SIGUSR1)
        wait_for_files(tmp_path, ["0.SIGUSR1", "1.SIGUSR1"])
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 3
    finally:
        launcher.kill()
        launcher.wait()
    assert (tmp_path / "1.SIGTERM").exists()


def wait_for_files(directory: Path, names: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all((directory / name).exists() for name in names):
        assert time.monotonic() < deadline, f"missing {names} in {sorted(os.listdir(directory))}"
        time.sleep(0.05)


def test_exports_quote_values_for_sh() -> None:
    text = cade_env.format_exports({"V": "it's a \"test\" $HOME `x`"})
    result = subprocess.run(["sh", "-c", f'{text}printf %s "$V"'], check=False, capture_output=True, text=True)
    assert result.stdout == "it's a \"test\" $HOME `x`"


def test_cade_env_command_line() -> None:
    run = [sys.executable, str(LAUNCHERS / "cade_env.py")]
    base = {"PATH": os.environ["PATH"]}
    exported = subprocess.run([*run, "exports", "torch"], check=False, capture_output=True, text=True,
                              env={**base, **SLURM_TASKS[2], "SLURM_JOB_NODELIST": "n1,n2"})
    assert "export RANK='2'\n" in exported.stdout and "export MASTER_ADDR='n1'\n" in exported.stdout
    outside = subprocess.run([*run, "exports", "torch"], check=False, capture_output=True, text=True, env=base)
    assert outside.returncode == 5 and "not inside a Slurm or PBS task" in outside.stderr
    waited = subprocess.run([*run, "wait-port", "127.0.0.1", "1", "0.3"], check=False, capture_output=True,
                            text=True, env=base)
    assert waited.returncode == 5 and "nothing listens on 127.0.0.1:1" in waited.stderr
    assert subprocess.run([*run, "bogus"], check=False, capture_output=True, env=base).returncode == 2
