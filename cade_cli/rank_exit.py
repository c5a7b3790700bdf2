"""A finished rank's exit, kept clear of Gloo's teardown abort. Standard library only.

torch's Gloo process group runs each collective on a worker thread (named `pt_gloo_runloop`),
which lets go of the collective's tensors only after the caller has been told that it is done.
Should the script end and the interpreter begin finalising first (easy on a loaded node), and
one of those tensors hold the last reference to its Python object, the worker thread needs the
GIL; during finalisation Python ends such a thread on the spot, inside a C++ destructor, and
the process aborts: `terminate called without an active exception`, exit status 134, from a
rank whose work was done (a core dump shows the worker in ~AsyncAllreduceWork, the main
thread in Py_FinalizeEx's collection). Ordering the script's teardown cannot prevent it:
destroy_process_group() does not stop the threads (a DistributedDataParallel model leaves
references to the group that outlive it). Waiting at exit until every worker thread is parked
does; `settle` is that wait.

`cade_cli.report` (the trial API, which det's shim and the Trial harness import) registers
`settle` to run at exit; a script that uses neither can call it last. Outside Linux (no /proc)
it returns at once.
"""

from __future__ import annotations

import atexit
import os
import sys
import time

SETTLE_TIMEOUT_SECONDS = 5.0   # a worker still busy after this is left to its fate
_POLL_SECONDS = 0.005
_WORKER_NAME = "pt_gloo"       # torch's name for its Gloo worker threads (pt_gloo_runloop)
_registered = False


def _gloo_workers() -> dict[str, tuple[str, str, str]]:
    """Each Gloo worker thread of this process: id -> (state, voluntary and involuntary
    context switches). A thread that ran between two readings changes them."""
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return {}
    workers = {}
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as handle:
                if not handle.read().startswith(_WORKER_NAME):
                    continue
            with open(f"/proc/self/task/{tid}/status", encoding="utf-8") as handle:
                status = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:  # the thread ended meanwhile
            continue
        workers[tid] = (status.get("State", "?").split()[0],
                        status.get("voluntary_ctxt_switches", "").strip(),
                        status.get("nonvoluntary_ctxt_switches", "").strip())
    return workers


def settle(timeout: float = SETTLE_TIMEOUT_SECONDS) -> bool:
    """Wait until torch's Gloo worker threads are parked: every one asleep, and none ran
    between two readings. True once they are (or when there are none), False on `timeout`."""
    if "torch.distributed" not in sys.modules:
        return True
    deadline = time.monotonic() + timeout
    before = _gloo_workers()
    while before:
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_SECONDS)  # without the GIL: a worker waiting for it can finish
        now = _gloo_workers()
        if now == before and all(state == "S" for state, _, _ in now.values()):
            return True
        before = now
    return True


def settle_at_exit() -> None:
    """Run `settle` at interpreter exit, before finalisation collects (once per process)."""
    global _registered
    if not _registered:
        _registered = True
        atexit.register(settle)
