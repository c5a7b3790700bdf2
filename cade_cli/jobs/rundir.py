"""Lays out one segment's run directory: params.json, control.json, launchers, job.sh.

Layout (docs/DEVELOPING.md):
    <exp_root>/trials/<trial>/params.json
    <exp_root>/trials/<trial>/segments/<k>/{job.sh, launch/, control.json}

Preparing a segment twice (a crash between preparing and submitting) gives the same files.

Everything here is private to the user whatever the umask: directories 0700, files 0600
(scripts 0700), since job.sh holds environment values. The experiment directory carries an
owner marker with its ledger's identity: a run directory is never shared by two ledgers.
A write the disk refuses (full, quota, read-only) is a StorageError.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cade_cli.errors import LedgerError, SpecError, StorageError
from cade_cli.jobs import render
from cade_cli.plugins import BACKENDS, load
from cade_cli.spec.experiment import ExperimentSpec, handed_target

OWNER_MARKER = ".cade-ledger"

# Backends with scheduler directives: module under cade_cli.backends, function name.
@dataclass(frozen=True)
class SegmentPaths:
    run_dir: Path
    script: Path
    job_name: str
    trial_dir: Path


def trial_dir_of(exp_root: str | Path, trial_id: int) -> Path:
    return Path(exp_root) / "trials" / str(trial_id)


def run_dir_of(exp_root: str | Path, trial_id: int, segment: int) -> Path:
    return trial_dir_of(exp_root, trial_id) / "segments" / str(segment)


def prepare_segment(
    *,
    spec: ExperimentSpec,
    experiment_id: int | str,
    trial_id: int,
    segment: int,
    params: Mapping[str, Any],
    start_length: int,
    target_length: int,
    report_at: Sequence[int],
    resume_from: str | Path | None,
    trial_seed: int,
    backend: str,
    exp_root: str | Path,
    template_dirs: Sequence[str | Path] = (),
    decision_wait: float = 0.0,
    job_name: str | None = None,
    owner: str | None = None,
) -> SegmentPaths:
    """Write everything a segment's batch job needs; return where it went.

    `decision_wait`: seconds a trial that reached its target waits for the driver to raise
    it (a promotable trial keeps its allocation instead of queueing again). `job_name`:
    the name the ledger recorded for the segment (default: derived the same way).
    `owner`: the ledger identity the experiment directory must carry (claimed when unmarked).
    """
    if backend not in render.TEMPLATE_FOR_BACKEND:
        known = ", ".join(sorted(render.TEMPLATE_FOR_BACKEND))
        raise SpecError(f"unknown backend {backend!r}", hint=f"one of: {known}")
    exp_root = Path(exp_root).absolute()
    with storage_errors(exp_root):
        if owner is not None:
            claim_experiment_dir(exp_root, owner, fresh=False)
        return _write_segment(spec, experiment_id, trial_id, segment, params, start_length,
                              target_length, report_at, resume_from, trial_seed, backend,
                              exp_root, template_dirs, decision_wait, job_name)


def _write_segment(spec: ExperimentSpec, experiment_id: int | str, trial_id: int, segment: int,
                   params: Mapping[str, Any], start_length: int, target_length: int,
                   report_at: Sequence[int], resume_from: str | Path | None, trial_seed: int,
                   backend: str, exp_root: Path, template_dirs: Sequence[str | Path],
                   decision_wait: float, job_name: str | None) -> SegmentPaths:
    trial_dir = trial_dir_of(exp_root, trial_id)
    run_dir = run_dir_of(exp_root, trial_id, segment)
    make_private_dir(run_dir)
    name = job_name or render.job_name(experiment_id, trial_id, segment, exp_root)

    write_json_atomic(
        trial_dir / "params.json",
        {"params": dict(params), "trial": trial_id, "experiment": experiment_id,
         "experiment_config": dict(spec.trial_config)},
    )
    link_checkpoint_directory(spec, experiment_id, trial_dir)
    write_control(run_dir, stop=False, reason="", target_length=target_length)
    copy_launchers(run_dir / "launch")

    cade_env = render.cade_environment(
        spec,
        backend=backend,
        experiment_id=experiment_id,
        trial_id=trial_id,
        segment=segment,
        run_dir=run_dir,
        trial_dir=trial_dir,
        start_length=start_length,
        target_length=target_length,
        report_at=report_at,
        resume_from=resume_from,
        trial_seed=trial_seed,
        decision_wait=decision_wait,
    )
    context = render.build_context(
        spec,
        backend=backend,
        job_name=name,
        cade_env=cade_env,
        directives=scheduler_directives(backend, spec, name, run_dir),
    )
    text = render.render_script(render.TEMPLATE_FOR_BACKEND[backend], context, template_dirs)
    script = run_dir / "job.sh"
    write_text_atomic(script, text, mode=0o700)
    return SegmentPaths(run_dir=run_dir, script=script, job_name=name, trial_dir=trial_dir)


def scheduler_directives(backend: str, spec: ExperimentSpec, job_name: str, run_dir: Path) -> list[str]:
    """`#SBATCH`/`#PBS` option strings from the backend module; the local backend has none."""
    module_name, _, function_name = BACKENDS.get(backend, ("", "", None))
    if function_name is None:
        return []
    # Loaded by name: a local-only installation never loads the cluster backends.
    function: Callable[[ExperimentSpec, str, Path], Sequence[str]] = load(module_name, function_name)
    return [str(d) for d in function(spec, job_name, run_dir)]


def link_checkpoint_directory(spec: ExperimentSpec, experiment_id: int | str, trial_dir: Path) -> None:
    """With a checkpoint directory (Determined's shared_fs), trials/<n>/checkpoints links into it.

    Every reader of checkpoints (the trial API, PBT's parent lookup) keeps using the trial's
    own path; the bytes land on the shared file system the spec names.
    """
    if spec.checkpoint_storage.directory is None:
        return
    link = trial_dir / "checkpoints"
    # The ledger's directory token tells apart experiment 1 of two projects sharing the directory.
    experiment = f"cade-{experiment_id}-{render.directory_token(trial_dir.parent.parent)}"
    target = Path(spec.checkpoint_storage.directory) / experiment / trial_dir.name
    # The target is created by the first checkpoint (a dry run leaves the shared directory alone).
    if link.is_symlink() or link.exists():
        return  # a later segment of the same trial: already linked (or already holding checkpoints)
    link.symlink_to(target, target_is_directory=True)


def write_control(run_dir: str | Path, *, stop: bool, reason: str, target_length: int) -> None:
    """Replace control.json atomically: the trial never reads half a file."""
    write_json_atomic(
        Path(run_dir) / "control.json",
        {"stop": bool(stop), "reason": str(reason),
         "target_length": handed_target(int(target_length)) or 0},  # 0: the trial decides
    )


def told_to_stop(run_dir: str | Path) -> bool:
    """control.json tells the segment to stop: it may already be ending on it."""
    try:
        return bool(json.loads(Path(run_dir, "control.json").read_text(encoding="utf-8"))["stop"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def copy_launchers(destination: Path) -> None:
    """Copy the package's launchers so a queued job never changes when the package does."""
    source = Path(str(importlib.resources.files("cade_cli.launchers")))
    make_private_dir(destination)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix in (".sh", ".py") and path.name != "__init__.py":
            shutil.copyfile(path, destination / path.name)
            os.chmod(destination / path.name, 0o700)
    # The `determined` import shim travels with the launchers (docs/determined-core.md).
    shim = Path(str(importlib.resources.files("cade_cli.det"))) / "shim"
    shutil.copytree(shim, destination / "det", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder, _, files in os.walk(destination / "det"):  # private like the rest of the run directory
        os.chmod(folder, 0o700)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o600)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_private_dir(path: Path) -> None:
    """Create `path` and its missing parents 0700, whatever the umask (mkdir's mode is
    masked by it; an existing directory is left as its owner set it)."""
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process
        os.chmod(folder, 0o700)


def claim_experiment_dir(exp_root: Path, owner: str, *, fresh: bool) -> None:
    """Mark `exp_root` as the ledger `owner`'s, or refuse it when another ledger's.

    `fresh` (a new experiment): the directory must not hold anything unmarked either, since
    run directories an older ledger left there would be taken for this one's.
    """
    marker = exp_root / OWNER_MARKER
    try:
        found = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        found = None
    if found == owner:
        return
    if found is not None or (fresh and exp_root.exists() and any(exp_root.iterdir())):
        holder = f"ledger {found}" if found else "an earlier ledger"
        raise LedgerError(
            f"the experiment directory {exp_root} belongs to {holder}, not to this one "
            f"({owner})", hint=f"move {exp_root} aside (or use another --ledger folder); "
                               "cade never reuses another ledger's run directories")
    make_private_dir(exp_root)
    write_text_atomic(marker, owner + "\n")


@contextmanager
def storage_errors(where: Path) -> Iterator[None]:
    """An OSError while writing run directories becomes a StorageError saying where."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or str(err)
        raise StorageError(f"cannot write under {where}: {reason}",
                           hint="free some space (or quota) there, then run `cade sync`; "
                                "nothing recorded was lost") from None
