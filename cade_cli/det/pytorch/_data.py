"""det.pytorch.DataLoader and the batch order the harness owns.

Determined's DataLoader is a description (dataset, per-slot batch size, shuffle, ...) that the
harness turns into a torch DataLoader. The harness owns the order: epoch `e` is a permutation
seeded by (seed, e), split across ranks, so that resuming at batch `b` replays exactly the
batches an uninterrupted run would have seen (skip = b within its epoch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.utils.data

# The forms Determined accepts for a batch and for a metric value.
TorchData = Any
_LOADER_ONLY = ("sampler", "batch_sampler", "batch_size", "shuffle", "drop_last")


class DataLoader:
    """Determined's data loader: the arguments of torch's, with the order left to the harness."""

    def __init__(self, dataset: torch.utils.data.Dataset[Any], batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, sampler: Any = None, batch_sampler: Any = None,
                 **loader_arguments: Any) -> None:
        if sampler is not None or batch_sampler is not None:
            raise ValueError("det.pytorch.DataLoader decides the batch order itself (so that a resumed "
                             "trial sees the same batches); pass shuffle=True instead of a sampler, or "
                             "return a torch.utils.data.DataLoader to keep your own")
        self.dataset: Any = dataset   # map-style: has a length
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.loader_arguments = loader_arguments

    def __len__(self) -> int:
        """Batches per epoch on one slot (as Determined's `len(loader)`)."""
        return EpochSampler(len(self.dataset), self.batch_size, self.shuffle, self.drop_last).batches_per_rank

    def get_data_loader(self, *, seed: int = 0, rank: int = 0, size: int = 1, epoch: int = 0,
                        skip: int = 0) -> torch.utils.data.DataLoader[Any]:
        """One epoch's torch DataLoader for this rank, starting `skip` batches in."""
        sampler = EpochSampler(len(self.dataset), self.batch_size, self.shuffle, self.drop_last,
                               seed=seed, rank=rank, size=size, epoch=epoch, skip=skip)
        arguments = {k: v for k, v in self.loader_arguments.items() if k not in _LOADER_ONLY}
        # Its own generator: torch draws worker seeds from the global RNG at every iter()
        # otherwise, and a resumed run (one iter() fewer) would drift from an uninterrupted one.
        arguments.setdefault("generator", torch.Generator().manual_seed(_epoch_seed(seed, epoch) + rank))
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, **arguments)


class EpochSampler(torch.utils.data.Sampler[list[int]]):
    """The batches of one epoch for one rank: a seeded permutation, padded so ranks stay equal."""

    def __init__(self, records: int, batch_size: int, shuffle: bool, drop_last: bool, *, seed: int = 0,
                 rank: int = 0, size: int = 1, epoch: int = 0, skip: int = 0) -> None:
        self.records, self.batch_size, self.shuffle = records, batch_size, shuffle
        self.seed, self.rank, self.size, self.epoch, self.skip = seed, rank, size, epoch, skip
        per_rank = math.ceil(records / size)
        self.batches_per_rank = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)

    def order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
            indices = torch.randperm(self.records, generator=generator).tolist()
        else:
            indices = list(range(self.records))
        padded = math.ceil(self.records / self.size) * self.size
        indices += indices[: padded - len(indices)]  # as DistributedSampler: every rank equal
        return indices[self.rank::self.size]

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.order()
        for batch in range(self.skip, self.batches_per_rank):
            yield mine[batch * self.batch_size: (batch + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, self.batches_per_rank - self.skip)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def batches_of(loader: Any, *, seed: int, rank: int, size: int, start_batch: int) -> Iterator[tuple[int, Any]]:
    """(epoch index, batch) forever from `start_batch` on (a torch loader repeats unseeded)."""
    per_epoch = epoch_batches(loader, size)
    epoch, skip = divmod(start_batch, per_epoch)
    while True:
        if isinstance(loader, DataLoader):
            torch_loader = loader.get_data_loader(seed=seed, rank=rank, size=size, epoch=epoch, skip=skip)
            iterator = iter(torch_loader)
        else:
            iterator = iter(loader)
            for _ in range(skip):
                next(iterator)
        for batch in iterator:
            yield epoch, batch
        epoch, skip = epoch + 1, 0


def epoch_batches(loader: Any, size: int) -> int:
    """One rank's batches per pass over `loader` (a det DataLoader is split across ranks)."""
    if isinstance(loader, DataLoader):
        count = EpochSampler(len(loader.dataset), loader.batch_size, loader.shuffle, loader.drop_last,
                             size=size).batches_per_rank
    else:
        count = len(loader)
    if count < 1:
        raise ValueError("the training data loader yields no batch: the dataset is smaller than a batch")
    return count


def to_device(data: TorchData, device: torch.device) -> TorchData:
    """Tensors inside dicts, lists and tuples moved to `device`; anything else as is."""
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=True)
    if isinstance(data, Mapping):
        return {key: to_device(value, device) for key, value in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(to_device(value, device) for value in data))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        rebuild: Any = type(data)   # a list, or a Sequence type built from an iterable
        return rebuild(to_device(value, device) for value in data)
    return data
