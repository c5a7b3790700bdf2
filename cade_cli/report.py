"""The trial-side API: what a training script imports. Standard library only.

    from cade_cli import report
    hp = report.params({"lr": 0.1})
    for length in ...:
        ...
        report.report_validation(length, {"loss": loss})
        if report.should_stop():
            break

Inside a cade job the CADE_* variables (docs/DEVELOPING.md) say where to read parameters and
where to write `metrics.jsonl`; only rank 0 writes. Outside cade (no variables) `params()`
returns the defaults and reports go to stderr, so the same script runs standalone. What each
call costs: README.md, "The trial side".
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn, overload

from cade_cli import rank_exit

METRICS_FILE = "metrics.jsonl"   # in the run directory; the engine ingests it
FINISHED_TARGET_FILE = "finished_target"  # in the run directory: the target the trial ended at
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "HOROVOD_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")
_STOP_SIGNALS = ("SIGUSR1", "SIGTERM")
_NEXT_TARGET_POLL_SECONDS = 0.2

# A rank that used torch.distributed's Gloo could otherwise abort at exit (rank_exit.py).
rank_exit.settle_at_exit()


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@overload
def _env_int(name: str) -> int | None: ...
@overload
def _env_int(name: str, default: int) -> int: ...
def _env_int(name: str, default: int | None = None) -> int | None:
    """The variable as an int, or `default` when it is unset."""
    value = _env(name)
    return int(value) if value is not None else default


# --- who and what this trial is ---------------------------------------------------------

def in_cade() -> bool:
    """True inside a cade job (CADE_RUN_DIR is set)."""
    return _env("CADE_RUN_DIR") is not None


def params(defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The trial's hyperparameters, over `defaults`; outside cade, the defaults."""
    merged = dict(defaults or {})
    path = _env("CADE_PARAMS_FILE")
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            merged.update(json.load(handle)["params"])
    return merged


def trial_id() -> int | None:
    return _env_int("CADE_TRIAL_ID")


def experiment_id() -> int | str | None:
    value = _env("CADE_EXPERIMENT_ID")
    return None if value is None else (int(value) if value.isdigit() else value)


def start_length() -> int:
    """Length already trained when this segment starts (0 for a fresh trial)."""
    return _env_int("CADE_START_LENGTH", 0)


def target_length(default: int | None = None) -> int | None:
    """Length to train to: the larger of CADE_TARGET_LENGTH and control.json's target."""
    state = _state()
    env_target = _env("CADE_TARGET_LENGTH")
    if env_target is None:
        return default
    state.refresh_control(force=True)
    state.target = max(int(env_target), state.control_target, state.target)
    state.target_handed = True
    return state.target


def length_unit() -> str:
    return _env("CADE_LENGTH_UNIT") or "batches"


def report_at() -> list[int]:
    """Lengths at which the searcher wants a validation report (rung boundaries)."""
    value = _env("CADE_REPORT_AT") or ""
    return sorted(int(x) for x in value.split(",") if x.strip())


def resume_from() -> Path | None:
    """The checkpoint directory to resume from, or None for a fresh start."""
    value = _env("CADE_RESUME_FROM")
    return Path(value) if value is not None else None


def seed() -> int | None:
    return _env_int("CADE_SEED")


def rank() -> int:
    """This process's global rank from the first launcher variable that is set (else 0)."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value:
            return int(value)
    return 0


def is_chief() -> bool:
    return rank() == 0


# --- state of this process --------------------------------------------------------------

class _State:
    """Lazily created per process: the metrics file, control.json cache, stop flags."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handle: IO[str] | None = None
        self.last_length: int | None = None
        self.finished = self.atexit_registered = False
        self.control_key: tuple[int, int] | None = None
        self.control_checked = 0.0
        self.control_stop, self.control_reason, self.control_target = False, "", 0
        self.target, self.target_handed = 0, False   # the target last handed to the script
        self.signal_name: str | None = None
        self.handlers_installed = False
        self.previous_handlers: dict[int, Any] = {}
        self.poll_seconds = float(os.environ.get("CADE_CONTROL_POLL_SECONDS") or 1.0)

    # metrics.jsonl ------------------------------------------------------------------
    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=_plain) + "\n"
        with self.lock:
            if self.handle is None:
                if not in_cade():
                    sys.stderr.write(line)
                    return
                if not is_chief():
                    return
                run_dir = Path(os.environ["CADE_RUN_DIR"])
                # Kept open for the whole segment: one open per process, not per line.
                self.handle = open(run_dir / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115
                self._register_atexit()
            self.handle.write(line)
            self.handle.flush()

    def note_length(self, length: int) -> None:
        if self.last_length is None or length > self.last_length:
            self.last_length = length
        self._register_atexit()

    def handed_target(self) -> int:
        """The target this script was last handed (CADE_TARGET_LENGTH until it asked)."""
        return self.target if self.target_handed else _env_int("CADE_TARGET_LENGTH", 0)

    def _register_atexit(self) -> None:
        if not self.atexit_registered:
            self.atexit_registered = True
            atexit.register(finish)

    # control.json -------------------------------------------------------------------
    def refresh_control(self, force: bool = False) -> None:
        run_dir, now = _env("CADE_RUN_DIR"), time.monotonic()
        if run_dir is None or (not force and now - self.control_checked < self.poll_seconds):
            return
        self.control_checked = now
        path = os.path.join(run_dir, "control.json")
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return
        # write_control replaces the file, so the inode changes even within one mtime tick.
        key = (info.st_ino, info.st_mtime_ns)
        if key == self.control_key:
            return
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return  # being replaced right now: read it next time
        self.control_key = key
        self.control_stop = bool(data.get("stop", False))
        self.control_reason = str(data.get("reason", ""))
        self.control_target = int(data.get("target_length", 0) or 0)

    # signals ------------------------------------------------------------------------
    def install_handlers(self) -> None:
        if self.handlers_installed or threading.current_thread() is not threading.main_thread():
            return
        self.handlers_installed = True
        for name in _STOP_SIGNALS:
            signum = getattr(signal, name)
            previous = signal.getsignal(signum)
            self.previous_handlers[signum] = previous
            signal.signal(signum, _make_handler(name, previous))


def _make_handler(name: str, previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        _on_stop_signal(name)
        if callable(previous):
            previous(signum, frame)
    return handler


def _on_stop_signal(name: str) -> None:
    state = _state()
    state.signal_name = name
    run_dir = _env("CADE_RUN_DIR")
    if run_dir is not None:
        # The driver reads this marker: the segment ended early on purpose (not a failure).
        with contextlib.suppress(OSError):
            Path(run_dir, "preempted").write_text(f"{name} {time.time():.3f}\n", encoding="utf-8")


_STATE: _State | None = None


def _state() -> _State:
    global _STATE
    if _STATE is None:
        _STATE = _State()
    return _STATE


def _reset_for_tests() -> None:
    """Forget all per-process state (tests run many fake trials in one process)."""
    global _STATE
    atexit.unregister(finish)
    if _STATE is not None:
        if _STATE.handle is not None:
            _STATE.handle.close()
        for signum, previous in _STATE.previous_handlers.items():
            signal.signal(signum, previous)
    _STATE = None


def _plain(value: Any) -> Any:
    """JSON fallback for numpy/torch scalars and paths, without importing either library."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return float(value)


# --- reporting --------------------------------------------------------------------------

def report_training(length: int, metrics: Mapping[str, Any]) -> None:
    _record("training", length, metrics=dict(metrics))


def report_validation(length: int, metrics: Mapping[str, Any]) -> None:
    """The searcher decides on validation metrics (the spec's `searcher.metric`)."""
    _record("validation", length, metrics=dict(metrics))


def _record(kind: str, length: int, **fields: Any) -> None:
    state, length = _state(), int(length)
    state.note_length(length)
    state.write({"kind": kind, "length": length, "time": time.time(), **fields})


@contextlib.contextmanager
def checkpoint(length: int) -> Iterator[Path]:
    """A directory to save into; on success it becomes `checkpoints/<length>/` atomically.

    Only the chief keeps what it writes; other ranks (and runs outside cade) get a
    throwaway directory, so every rank can run the same saving code.
    """
    length = int(length)
    trial_dir = _env("CADE_TRIAL_DIR")
    if trial_dir is None or not is_chief():
        with tempfile.TemporaryDirectory(prefix="cade-checkpoint-") as throwaway:
            yield Path(throwaway)
        return
    base = Path(trial_dir) / "checkpoints"
    (base.resolve() if base.is_symlink() else base).mkdir(parents=True, exist_ok=True)  # shared_fs: a link
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{length}-", dir=base))
    try:
        yield staging
        meta = {"length": length, "time": time.time(), "trial": trial_id(),
                "segment": _env_int("CADE_SEGMENT", 0)}
        (staging / "cade_checkpoint.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
        final = _publish(staging, base / str(length))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _record("checkpoint", length, path=str(final))


def _publish(staging: Path, final: Path) -> Path:
    """Rename staging to final; an older checkpoint of the same length is replaced."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


# --- stopping and continuing ------------------------------------------------------------

def should_stop() -> bool:
    """True once the driver asked this trial to stop or a stop signal arrived.

    Cheap enough to call every step. The first call installs SIGUSR1/SIGTERM handlers, so
    that a preemption or time-limit notice lets the script checkpoint and exit.
    """
    state = _state()
    state.install_handlers()
    if state.signal_name is not None:
        return True
    state.refresh_control()
    return state.control_stop


def stop_reason() -> str:
    """Why should_stop() is true: the driver's reason, or `preempted (SIGUSR1)`; else ''."""
    state = _state()
    if state.signal_name is not None:
        return f"preempted ({state.signal_name})"
    state.refresh_control()
    return (state.control_reason or "stopped by the searcher") if state.control_stop else ""


def next_target(timeout: float | None = None) -> int | None:
    """After reaching the target, wait for the driver to raise it; None means: end here.

    Waits up to `timeout` seconds (default $CADE_DECISION_WAIT, else 0). A promotable trial
    keeps its allocation this way instead of queueing again for its next rung.
    """
    if not in_cade():
        return None
    state = _state()
    # Not a newer target: a raise that arrived before this call is what the caller waits for.
    baseline = state.handed_target()
    wait = float(os.environ.get("CADE_DECISION_WAIT") or 0) if timeout is None else timeout
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        state.refresh_control(force=True)
        if state.signal_name is not None or state.control_stop:
            return None
        if state.control_target > baseline:
            state.target = state.control_target
            state.target_handed = True
            return state.target
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(_NEXT_TARGET_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def invalid_hyperparameters(message: str) -> NoReturn:
    """Tell the searcher these hyperparameters cannot train (not a failure), then exit 0."""
    state = _state()
    state.write({"kind": "invalid_hp", "length": 0, "time": time.time(), "message": str(message)})
    state.finished = True
    raise SystemExit(0)


def finish() -> None:
    """Write the segment_end line (also run at exit). Idempotent."""
    state = _state()
    if state.finished:
        return
    state.finished = True
    length = state.last_length if state.last_length is not None else start_length()
    _record_finished_target(state)
    state.write({"kind": "segment_end", "length": length, "time": time.time()})
    if state.handle is not None:
        state.handle.close()
        state.handle = None


def _record_finished_target(state: _State) -> None:
    """Write the target this process last read, atomically: the driver may raise control.json
    after that read, and a raise the trial never saw is not a failure to reach it."""
    run_dir = _env("CADE_RUN_DIR")
    if run_dir is None or _env("CADE_TARGET_LENGTH") is None or not is_chief():
        return
    path = Path(run_dir, FINISHED_TARGET_FILE)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(f"{state.handed_target()}\n", encoding="utf-8")
    os.replace(staging, path)
