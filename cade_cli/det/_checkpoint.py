"""core_context.checkpoint: Determined's storage ids are cade checkpoint directories.

A checkpoint is published by report.checkpoint() as `<trial dir>/checkpoints/<length>/`
(atomically, with the `checkpoint` line the driver resumes from); its storage id is that
directory's path. The length is the metadata's `steps_completed`, as Determined requires.
Outside cade, `checkpoint_storage` (a path, or a dict with host_path/storage_path) names
where checkpoints go.
"""

from __future__ import annotations

import contextlib
import enum
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cade_cli import report
from cade_cli.det._distributed import DistributedContext
from cade_cli.det._train import TrainContext

METADATA_FILE = "metadata.json"


class DownloadMode(enum.Enum):
    LocalWorkersShareDownload = "LOCAL_WORKERS_SHARE_DOWNLOAD"
    NoSharedDownload = "NO_SHARED_DOWNLOAD"


class CheckpointContext:
    def __init__(self, dist: DistributedContext, train: TrainContext,
                 storage_base: Path | None) -> None:
        self._dist, self._train, self._base = dist, train, storage_base

    def _length(self, metadata: Mapping[str, Any]) -> int:
        if "steps_completed" in metadata:
            return int(metadata["steps_completed"])
        if self._train.last_steps is not None:
            return self._train.last_steps
        return report.start_length()

    @contextlib.contextmanager
    def store_path(self, metadata: Mapping[str, Any],
                   shard: bool = False) -> Iterator[tuple[Path, str]]:
        """(a directory to save into, its storage id); published when the block ends."""
        length = self._length(metadata)
        if not shard and self._dist.rank != 0:
            raise RuntimeError("checkpoint.store_path(shard=False) is for the chief only; "
                               "use shard=True to save from every rank")
        with contextlib.ExitStack() as stack:
            staging: Path | None = None
            if self._dist.rank == 0:
                staging = stack.enter_context(self._publishing(length))
            if shard:
                staging = Path(self._dist.broadcast(str(staging)))
            assert staging is not None
            storage_id = self._storage_id(length)
            yield staging, storage_id
            everything = self._dist.gather(dict(metadata)) if shard else [dict(metadata)]
            if everything is not None:  # the chief writes the merged metadata, then publishes
                merged: dict[str, Any] = {}
                for part in everything:
                    merged.update(part)
                (staging / METADATA_FILE).write_text(json.dumps(merged, default=str) + "\n",
                                                     encoding="utf-8")

    def _publishing(self, length: int) -> contextlib.AbstractContextManager[Path]:
        if report.in_cade() or self._base is None:
            return report.checkpoint(length)
        return _publish_under(self._base, length)

    def _storage_id(self, length: int) -> str:
        trial_dir = os.environ.get("CADE_TRIAL_DIR")
        if trial_dir:
            return str(Path(trial_dir) / "checkpoints" / str(length))
        if self._base is not None:
            return str(self._base / str(length))
        return f"<not kept outside cade: pass checkpoint_storage to core.init> {length}"

    def upload(self, ckpt_dir: str | os.PathLike[str] | None, metadata: Mapping[str, Any],
               *, shard: bool = False, selector: Callable[[str], bool] | None = None) -> str:
        with self.store_path(metadata, shard=shard) as (path, storage_id):
            if ckpt_dir is not None:
                _copy(Path(ckpt_dir), path, selector)
        return storage_id

    @contextlib.contextmanager
    def restore_path(self, storage_id: str, selector: Callable[[str], bool] | None = None,
                     download_mode: DownloadMode = DownloadMode.LocalWorkersShareDownload,
                     ) -> Iterator[Path]:
        """The checkpoint directory itself (on the shared filesystem: nothing to download)."""
        yield _existing(storage_id)

    def download(self, storage_id: str, ckpt_dir: str | os.PathLike[str],
                 download_mode: DownloadMode = DownloadMode.LocalWorkersShareDownload,
                 *, selector: Callable[[str], bool] | None = None) -> None:
        _copy(_existing(storage_id), Path(ckpt_dir), selector)

    def get_metadata(self, storage_id: str) -> dict[str, Any]:
        path = _existing(storage_id) / METADATA_FILE
        if not path.is_file():
            return {}
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def delete(self, storage_id: str, globs: list[str] | None = None) -> None:
        """Remove the checkpoint (or the files matching `globs` in it). cade resumes a
        trial from its newest checkpoint still on disk."""
        root = _existing(storage_id)
        if not globs:
            shutil.rmtree(root)
            return
        for path in sorted(root.rglob("*"), reverse=True):
            relative = str(path.relative_to(root))
            if not any(fnmatch.fnmatch(relative, pattern) for pattern in globs):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def _existing(storage_id: str) -> Path:
    path = Path(storage_id)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {storage_id!r} does not exist (cade storage ids "
                                "are checkpoint directories, as get_cluster_info() gives them)")
    return path


def _copy(source: Path, destination: Path, selector: Callable[[str], bool] | None) -> None:
    for path in sorted(source.rglob("*")):
        relative = str(path.relative_to(source))
        if path.is_dir() or (selector is not None and not selector(relative)):
            continue
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination / relative)


@contextlib.contextmanager
def _publish_under(base: Path, length: int) -> Iterator[Path]:
    """Outside cade: stage under `base`, then rename to `base/<length>` on success."""
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{length}-", dir=base))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    final = base / str(length)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def storage_base(checkpoint_storage: Any) -> Path | None:
    """Where checkpoints go outside cade, from core.init's `checkpoint_storage`: a path, or
    Determined's shared_fs dict (`host_path`, optionally joined with `storage_path`)."""
    if checkpoint_storage is None:
        return None
    if isinstance(checkpoint_storage, (str, os.PathLike)):
        return Path(checkpoint_storage)
    host = checkpoint_storage.get("host_path")
    if not host:
        raise ValueError("checkpoint_storage outside cade needs a directory: a path, or "
                         "{'host_path': DIR}")
    return Path(host) / str(checkpoint_storage.get("storage_path") or "")
