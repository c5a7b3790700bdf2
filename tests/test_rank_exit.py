"""rank_exit.settle: a finished rank waits for torch's Gloo worker threads to park before exit."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from cade_cli import rank_exit


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, tuple[str, str, str]]]]:
    """Scripted readings of the worker threads, one per call (the last one repeats)."""
    script: list[dict[str, tuple[str, str, str]]] = []
    calls = itertools.count()

    def read() -> dict[str, tuple[str, str, str]]:
        return script[min(next(calls), len(script) - 1)]

    monkeypatch.setitem(sys.modules, "torch.distributed", sys)  # any module: "imported"
    monkeypatch.setattr(rank_exit, "_gloo_workers", read)
    yield script


def test_settle_waits_until_no_worker_runs_between_two_readings(readings: list) -> None:
    readings.extend([
        {"7": ("R", "5", "1"), "8": ("S", "3", "0")},   # 7 is running
        {"7": ("S", "6", "1"), "8": ("S", "3", "0")},   # 7 ran and blocked: not yet
        {"7": ("S", "6", "1"), "8": ("S", "3", "0")},   # nothing ran: parked
    ])
    assert rank_exit.settle(timeout=5.0) is True


def test_settle_gives_up_on_a_busy_worker(readings: list) -> None:
    readings.append({"7": ("R", "5", "1")})
    assert rank_exit.settle(timeout=0.05) is False


def test_settle_returns_at_once_without_workers(readings: list) -> None:
    readings.append({})
    assert rank_exit.settle(timeout=0.0) is True


def test_importing_the_trial_api_registers_the_wait() -> None:
    import cade_cli.report  # noqa: F401

    assert rank_exit._registered


# The wait relies on torch naming its Gloo worker threads; a torch that stops doing so would
# make it a silent no-op, so the installed torch is checked here with a real process group.
REAL_GROUP = textwrap.dedent("""
    import json, os, socket, time, torch, torch.distributed as dist
    from cade_cli import rank_exit
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    model(torch.randn(8, 4)).sum().backward()
    total = torch.ones(1)
    dist.all_reduce(total)
    dist.barrier()
    dist.destroy_process_group()
    workers = rank_exit._gloo_workers()
    start = time.monotonic()
    settled = rank_exit.settle()
    print(json.dumps({"workers": len(workers), "settled": settled,
                      "seconds": time.monotonic() - start}))
""")


def test_settle_finds_and_waits_for_torchs_real_gloo_workers() -> None:
    pytest.importorskip("torch.distributed")
    if not sys.platform.startswith("linux"):
        pytest.skip("the worker threads are read from /proc")
    result = subprocess.run([sys.executable, "-c", REAL_GROUP], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # destroy_process_group leaves the threads running: exactly what the wait is for.
    assert outcome["workers"] >= 1
    assert outcome["settled"] is True
    assert outcome["seconds"] < 1.0
