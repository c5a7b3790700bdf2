"""cade pack worker: one batch job runs several trial segments side by side.

Run by a packed job's script as `python3 cade_pack.py PACK_DIR`. Standard library only.

The driver stays the one writer of the ledger: it puts each segment to run in the queue
folder (`queue/NAME.json`: the segment's run directory and script). A worker with a free slot
claims one by renaming it into its own `claimed/` folder (a rename is atomic: one worker gets
it, never two), runs the segment's own job script pinned to its slot, and writes
`done/NAME` (the script's exit status) when it ends. The segment reports through its run
directory as a single-trial job does. The worker stops taking work when `release` appears,
on a preemption or time-limit notice, when its own time limit is near, or when it had nothing
to run for `idle_timeout` seconds; it exits once its segments have ended.

Per-segment control from the driver: `<run_dir>/pack-cancel` (TERM to the segment),
`<run_dir>/pack-kill` (KILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

# The job's GPU request, which srun would otherwise apply to each step on top of the step's
# own: a step would hold every GPU of the job and the steps beside it would wait.
INHERITED_GPU_REQUESTS = ("SLURM_GPUS", "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_TASK",
                          "SLURM_GPUS_PER_SOCKET", "SLURM_TRES_PER_TASK")
TICK = 0.2          # seconds between looks at the queue and the running segments


def _write_atomic(path, text):
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class Slot:
    def __init__(self, index, cpus, gpus):
        self.index, self.cpus, self.gpus = index, cpus, gpus
        self.name = self.run_dir = self.process = None
        self.signalled = set()


class Worker:
    def __init__(self, pack_dir):
        self.dir = pack_dir
        with open(os.path.join(pack_dir, "pack.json"), encoding="utf-8") as handle:
            self.cfg = json.load(handle)
        self.queue = self.cfg["queue"]
        self.notice = None          # a signal the scheduler sent: stop taking work, forward it
        self.started = time.time()
        self.last_busy = self.started
        self.slots = self._make_slots()
        for folder in ("claimed", "done"):
            os.makedirs(os.path.join(pack_dir, folder), exist_ok=True)

    def _make_slots(self):
        """Each trial gets its own CPUs (and GPUs) out of what this job may use."""
        per_trial = self.cfg["slots_per_trial"]
        count = self.cfg["slots"] // per_trial
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        width = len(cpus) // count if len(cpus) >= count else 0
        visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
        gwidth = len(visible) // count if self.cfg["gpus"] else 0
        return [Slot(i, cpus[i * width:(i + 1) * width], visible[i * gwidth:(i + 1) * gwidth])
                for i in range(count)]

    # -- the loop ---------------------------------------------------------------------------

    def run(self):
        self._forget_earlier_run()
        _write_atomic(os.path.join(self.dir, "started"), f"{time.time():.3f} {os.getpid()}\n")
        while True:
            self._reap()
            self._control()
            taking = self._takes_work()
            if taking:
                self._claim()
            busy = [s for s in self.slots if s.process is not None]
            if busy:
                self.last_busy = time.time()
            elif not taking or time.time() - self.last_busy >= self.cfg["idle_timeout"]:
                break
            time.sleep(TICK)
        # From here on nothing is claimed: what stays queued goes to another pack.
        _write_atomic(os.path.join(self.dir, "closing"), f"{time.time():.3f}\n")
        while any(s.process is not None for s in self.slots):
            self._reap()
            self._control()
            time.sleep(TICK)
        return 0

    def _forget_earlier_run(self):
        """A requeued job starts again: what its earlier run claimed died with it."""
        done = set(os.listdir(os.path.join(self.dir, "done")))
        for entry in os.listdir(os.path.join(self.dir, "claimed")):
            name = entry[:-5]
            if name not in done:
                _write_atomic(os.path.join(self.dir, "done", name), "restart\n")

    def _takes_work(self):
        if self.notice or os.path.exists(os.path.join(self.dir, "release")):
            return False
        walltime = self.cfg.get("walltime")
        if walltime:
            return time.time() + self.cfg["reserve"] < self.started + walltime
        return True

    def _claim(self):
        free = [s for s in self.slots if s.process is None]
        if not free:
            return
        try:
            entries = sorted(e for e in os.listdir(self.queue)
                             if e.endswith(".json") and not e.startswith("."))
        except FileNotFoundError:
            return
        for entry in entries:
            if not free:
                return
            target = os.path.join(self.dir, "claimed", entry)
            try:
                os.rename(os.path.join(self.queue, entry), target)
            except FileNotFoundError:
                continue  # another worker took it, or the driver withdrew it
            with open(target, encoding="utf-8") as handle:
                self._start(free.pop(0), json.load(handle))

    def _start(self, slot, work):
        slot.name, slot.run_dir, slot.signalled = work["name"], work["run_dir"], set()
        env = dict(os.environ)
        env["CADE_PACK_SLOT"] = str(slot.index)
        if slot.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        command = ["bash", work["script"]]
        if self.cfg["mode"] == "slurm":
            command = self._srun(slot) + command
            for name in INHERITED_GPU_REQUESTS:
                env.pop(name, None)
        cpus = slot.cpus if self.cfg["mode"] != "slurm" else []
        with open(os.path.join(slot.run_dir, "stdout.log"), "ab") as out, \
                open(os.path.join(slot.run_dir, "stderr.log"), "ab") as err:
            slot.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)

    def _srun(self, slot):
        """One job step per segment: --exact gives it only its own CPUs (and GPUs)."""
        per_trial = self.cfg["slots_per_trial"]
        step = ["srun", "--exact", "--nodes=1", "--ntasks=1", "--kill-on-bad-exit=1",
                f"--cpus-per-task={per_trial * self.cfg['cpus_per_slot']}",
                f"--job-name={slot.name}"]
        if self.cfg["gpus"]:
            # Per node, not --gpus: srun takes the job's SLURM_GPUS_PER_NODE from the
            # environment, and a step asking --gpus=1 on top of it was given all the job's
            # GPUs and waited for the step beside it (Slurm 22.05, measured).
            step.append(f"--gpus-per-node={per_trial}")
        return step

    def _reap(self):
        for slot in self.slots:
            if slot.process is None or slot.process.poll() is None:
                continue
            _write_atomic(os.path.join(self.dir, "done", slot.name), f"{slot.process.returncode}\n")
            slot.name = slot.run_dir = slot.process = None

    def _control(self):
        for slot in self.slots:
            if slot.process is None:
                continue
            wanted = set()
            if self.notice:
                wanted.add(self.notice)
            if os.path.exists(os.path.join(slot.run_dir, "pack-cancel")):
                wanted.add(signal.SIGTERM)
            if os.path.exists(os.path.join(slot.run_dir, "pack-kill")):
                wanted.add(signal.SIGKILL)
            for signum in wanted - slot.signalled:
                _signal_tree(slot.process.pid, signum)
                slot.signalled.add(signum)

    def on_signal(self, signum, _frame):
        self.notice = signum


def _signal_tree(pid, signum):
    """The segment's script gets TERM/USR1 (it forwards them to its launch); KILL reaches
    every process below it too, since nothing is left to forward it."""
    targets = [pid] + (_descendants(pid) if signum == signal.SIGKILL else [])
    for target in targets:
        try:
            os.kill(target, signum)
        except ProcessLookupError:
            pass


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def main(argv):
    worker = Worker(argv[1])
    for name in ("SIGUSR1", "SIGTERM", "SIGINT"):
        signal.signal(getattr(signal, name), worker.on_signal)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
