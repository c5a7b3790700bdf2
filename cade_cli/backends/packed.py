"""Packing: trial segments run side by side inside a few batch jobs that hold nodes.

`PackedScheduler` wraps a backend's Scheduler and keeps the engine's view unchanged: each
segment still has a job id (`pack:NAME`), a run directory and an exit code. Submitting a
segment puts it in the experiment's queue folder; the pack jobs' workers (launchers/
cade_pack.py) claim queued segments by an atomic rename and run them, one per slot. When the
queue holds more than the live packs can take, a new pack job is submitted through the
wrapped scheduler. Everything is files under `<exp_root>/packs/`, so a new wrapper (the
driver was killed) sees what an old one did; the ledger keeps its one writer, the driver.

Files (written atomically):
    queue/NAME.json          a segment waiting for a slot: {name, run_dir, script}
    withdrawn/NAME.json      canceled before any worker took it
    jobs/K/{pack.json, job.sh, job_id, started, closing, release}
    jobs/K/claimed/NAME.json taken by pack K;  jobs/K/done/NAME  its exit status ("restart":
                             the pack was requeued while it ran)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cade_cli.backends.base import JobRequest, JobState, JobStatus, Scheduler
from cade_cli.jobs.ingest import read_exit_code

PREFIX = "pack:"
CANCEL_MARKER, KILL_MARKER = "pack-cancel", "pack-kill"


@dataclass(frozen=True)
class PackShape:
    slots: int                 # slots one pack job holds
    slots_per_trial: int


# Writes jobs/K (pack.json, job.sh) for a new pack and returns its JobRequest.
PackFactory = Callable[[Path, int], JobRequest]


class PackedScheduler(Scheduler):
    def __init__(self, inner: Scheduler, root: Path, shape: PackShape,
                 new_pack: PackFactory) -> None:
        self.inner, self.root, self.shape, self.new_pack = inner, Path(root), shape, new_pack
        self.name = inner.name
        for folder in ("queue", "withdrawn", "jobs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    # -- the Scheduler calls ----------------------------------------------------------------

    def submit(self, request: JobRequest) -> str:
        work = {"name": request.name, "run_dir": str(request.run_dir),
                "script": str(request.script)}
        _write_json(self.root / "queue" / f"{request.name}.json", work)
        self._ensure_capacity()
        return PREFIX + request.name

    def poll(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        packs = self._pack_states()
        self._ensure_capacity(packs)
        return {job_id: self._status(job_id, packs) for job_id in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        self._mark(job_ids, CANCEL_MARKER)

    def kill(self, job_ids: Sequence[str]) -> None:
        self._mark(job_ids, KILL_MARKER)

    def find_by_name(self, name_prefix: str) -> Mapping[str, str]:
        found = {}
        for path in self._placed_files():
            name = path.name[:-len(".json")]
            if name.startswith(name_prefix):
                found[name] = PREFIX + name
        return found

    def signal(self, job_ids: Sequence[str], signal_name: str) -> None:
        packs = {self._claimed_by(_name(j)) for j in job_ids}
        ids = [self._job_id(pack) for pack in packs if pack is not None]
        self.inner.signal([i for i in ids if i], signal_name)

    def close(self) -> None:
        self.inner.close()

    def release(self, idle_only: bool = False) -> None:
        """Every pack (`idle_only`: every pack running nothing) takes no more work and ends
        once its segments have; one still queued is canceled (its worker, should it start
        meanwhile, sees `release` first)."""
        if idle_only and _names(self.root / "queue"):
            return  # a queued segment is about to be claimed by one of them
        unstarted = []
        for pack in self._pack_dirs():
            if (pack / "release").exists() or (idle_only and self._running(pack)):
                continue
            _write_text(pack / "release", "")
            job_id = self._job_id(pack)
            if job_id and not (pack / "started").exists():
                unstarted.append(job_id)
        if unstarted:
            self.inner.cancel(unstarted)

    # -- packs --------------------------------------------------------------------------

    def _pack_dirs(self) -> list[Path]:
        return sorted((p for p in (self.root / "jobs").iterdir() if p.name.isdigit()),
                      key=lambda p: int(p.name))

    def _job_id(self, pack: Path) -> str | None:
        try:
            return (pack / "job_id").read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def _pack_states(self) -> dict[Path, JobStatus | None]:
        """Every pack with its job's status (None: it was never submitted). A pack seen
        ended keeps that state in `ended`: it is not asked about again."""
        packs = self._pack_dirs()
        known = {p: _ended(p) for p in packs}
        ids = {p: self._job_id(p) or self._adopt(p) for p in packs if known[p] is None}
        live = [i for i in ids.values() if i]
        statuses = self.inner.poll(live) if live else {}
        for pack, job_id in ids.items():
            status = statuses.get(job_id or "")
            if status is not None and status.state.finished:
                _write_json(pack / "ended", {"state": status.state.value, "reason": status.reason,
                                             "nodes": status.nodes})
            known[pack] = status
        return known

    def _adopt(self, pack: Path) -> str | None:
        """A pack submitted by a driver that died before writing its job id."""
        try:
            name = (pack / "job_name").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None   # the driver died before submitting it
        if (pack / "refused").exists():
            return None
        job_id = self.inner.find_by_name(name).get(name)
        if job_id:
            _write_text(pack / "job_id", job_id)
        return job_id

    def _free_slots(self, pack: Path, status: JobStatus | None) -> int:
        if status is None or status.state.finished or (pack / "closing").exists() \
                or (pack / "release").exists():
            return 0
        return self.shape.slots // self.shape.slots_per_trial - self._running(pack)

    def _running(self, pack: Path) -> int:
        return len(_names(pack / "claimed")) - len(_names(pack / "done", suffix=""))

    def _ensure_capacity(self, packs: dict[Path, JobStatus | None] | None = None) -> None:
        """Submit as many packs as the queue needs beyond what live packs can still take."""
        waiting = len(_names(self.root / "queue"))
        if not waiting:
            return
        packs = self._pack_states() if packs is None else packs
        free = sum(self._free_slots(p, s) for p, s in packs.items())
        per_pack = self.shape.slots // self.shape.slots_per_trial
        for _ in range(math.ceil(max(0, waiting - free) / per_pack)):
            self._submit_pack()

    def _submit_pack(self) -> None:
        existing = self._pack_dirs()
        index = int(existing[-1].name) + 1 if existing else 1
        pack = self.root / "jobs" / str(index)
        pack.mkdir(parents=True)
        request = self.new_pack(pack, index)
        _write_text(pack / "job_name", request.name)   # before submitting: found again by name
        try:
            job_id = self.inner.submit(request)
        except Exception:
            _write_text(pack / "refused", "")           # not looked for again
            raise
        _write_text(pack / "job_id", job_id)

    # -- segments -----------------------------------------------------------------------

    def _placed_files(self) -> list[Path]:
        found = list((self.root / "queue").glob("*.json"))
        found += (self.root / "withdrawn").glob("*.json")
        for pack in self._pack_dirs():
            found += (pack / "claimed").glob("*.json")
        return found

    def _claimed_by(self, name: str) -> Path | None:
        for pack in self._pack_dirs():
            if (pack / "claimed" / f"{name}.json").exists():
                return pack
        return None

    def _status(self, job_id: str, packs: dict[Path, JobStatus | None]) -> JobStatus:
        name = _name(job_id)
        if (self.root / "queue" / f"{name}.json").exists():
            never = [s for s in packs.values() if s is not None and s.never_starts]
            if never:   # a pack too large for the nodes: no pack of this shape ever starts
                return JobStatus(job_id, JobState.PENDING, never_starts=True,
                                 reason=f"its pack job: {never[0].reason}")
            return JobStatus(job_id, JobState.PENDING, reason="waiting for a slot in a pack")
        if (self.root / "withdrawn" / f"{name}.json").exists():
            return JobStatus(job_id, JobState.CANCELLED, reason="canceled before it started")
        pack = self._claimed_by(name)
        if pack is None:
            return JobStatus(job_id, JobState.UNKNOWN)
        work = json.loads((pack / "claimed" / f"{name}.json").read_text(encoding="utf-8"))
        code = read_exit_code(work["run_dir"])
        done = _read_done(pack / "done" / name)
        pack_status = packs.get(pack)
        if code is not None:
            return JobStatus(job_id, JobState.COMPLETED if code == 0 else JobState.FAILED, code,
                             nodes=pack_status.nodes if pack_status else "")
        if done == "restart":
            return JobStatus(job_id, JobState.PREEMPTED, reason="its pack job was requeued")
        if done is not None:
            cancelled = Path(work["run_dir"], CANCEL_MARKER).exists()
            return JobStatus(job_id, JobState.CANCELLED if cancelled else JobState.FAILED,
                             reason=f"its script ended ({done}) without an exit code")
        if pack_status is not None and pack_status.state.finished:
            return JobStatus(job_id, pack_status.state, reason=f"its pack job ended: "
                             f"{pack_status.reason or pack_status.state.value}")
        nodes = pack_status.nodes if pack_status else ""
        return JobStatus(job_id, JobState.RUNNING, nodes=nodes)

    def _mark(self, job_ids: Sequence[str], marker: str) -> None:
        for job_id in job_ids:
            name = _name(job_id)
            queued = self.root / "queue" / f"{name}.json"
            try:  # not taken yet: withdrawing it is atomic against a worker's claim
                os.rename(queued, self.root / "withdrawn" / f"{name}.json")
                continue
            except FileNotFoundError:
                pass
            pack = self._claimed_by(name)
            if pack is not None:
                work = json.loads((pack / "claimed" / f"{name}.json").read_text(encoding="utf-8"))
                _write_text(Path(work["run_dir"]) / marker, "")


def _name(job_id: str) -> str:
    return job_id.removeprefix(PREFIX)


def _names(folder: Path, suffix: str = ".json") -> list[str]:
    try:
        return [e for e in os.listdir(folder) if e.endswith(suffix) and not e.startswith(".")]
    except FileNotFoundError:
        return []


def _ended(pack: Path) -> JobStatus | None:
    try:
        data = json.loads((pack / "ended").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return JobStatus(pack.name, JobState(data["state"]), reason=data["reason"],
                     nodes=data["nodes"])


def _read_done(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, data: object) -> None:
    _write_text(path, json.dumps(data, sort_keys=True) + "\n")
