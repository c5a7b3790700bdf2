"""A small CNN on scikit-learn's bundled 8x8 digits (no download), driven by cade.

Hyperparameters: lr, momentum, channels, dropout, batch_size, weight_decay.
Length unit: `batches` (global batches) or `epochs` (searcher.length_unit).

Data parallel: with CADE_LAUNCHER=torch and WORLD_SIZE > 1 it joins a torch.distributed
gloo group (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT from the launcher) and trains with DDP;
with CADE_LAUNCHER=horovod it uses horovod.torch. Each rank takes its share of every global
batch; only rank 0 validates and reports. Every rank prints `param_checksum=...` at the end
so tests can check that all ranks hold identical parameters.

Checkpoints hold the model, the optimizer and every rank's RNG state; batches come from a
permutation seeded by (seed, epoch), so a resumed run equals an uninterrupted one.

Environment: DIGITS_THREADS (torch threads per process, default 1), DIGITS_DEVICE
(auto | cpu | cuda, default auto).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from cade_cli import report

DEFAULTS: dict[str, Any] = {
    "lr": 0.05,
    "momentum": 0.9,
    "channels": 16,
    "dropout": 0.25,
    "batch_size": 64,
    "weight_decay": 0.0,
}
STANDALONE_EPOCHS = 3
VALIDATION_FRACTION = 0.2
LAUNCH_ERROR = 5


class Net(nn.Module):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(2 * channels * 16, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)          # 8x8 -> 4x4
        x = self.dropout(torch.flatten(x, 1))
        return self.fc2(F.relu(self.fc1(x)))


class World:
    """Rank, size and the few collectives the loop needs, for single/torch/horovod runs."""

    def __init__(self) -> None:
        self.kind = "single"
        self.rank, self.size = 0, 1
        self.hvd: Any = None
        launcher = os.environ.get("CADE_LAUNCHER", "torch")
        if launcher == "horovod":
            self._init_horovod()
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            dist.init_process_group("gloo")
            self.kind, self.rank, self.size = "torch", dist.get_rank(), dist.get_world_size()

    def _init_horovod(self) -> None:
        try:
            import horovod.torch as hvd  # imported only when asked for: an optional build
        except ImportError as err:
            print(f"launcher horovod: cannot import horovod.torch ({err})", file=sys.stderr)
            raise SystemExit(LAUNCH_ERROR) from None
        hvd.init()
        self.kind, self.hvd, self.rank, self.size = "horovod", hvd, hvd.rank(), hvd.size()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank (all ranks stop together)."""
        value = torch.tensor([1.0 if flag else 0.0])
        if self.kind == "torch":
            import torch.distributed as dist

            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        elif self.kind == "horovod":
            value = self.hvd.allreduce(value, op=self.hvd.Max)
        return bool(value.item() > 0)

    def from_chief(self, obj: Any) -> Any:
        if self.kind == "torch":
            import torch.distributed as dist

            box = [obj]
            dist.broadcast_object_list(box, src=0)
            return box[0]
        if self.kind == "horovod":
            return self.hvd.broadcast_object(obj, root_rank=0)
        return obj

    def gather(self, obj: Any) -> list[Any]:
        if self.kind == "torch":
            import torch.distributed as dist

            out: list[Any] = [None] * self.size
            dist.all_gather_object(out, obj)
            return out
        if self.kind == "horovod":
            return list(self.hvd.allgather_object(obj))
        return [obj]

    def close(self) -> None:
        if self.kind == "torch":
            import torch.distributed as dist

            dist.barrier()  # no rank closes its connections while another still waits on them
            dist.destroy_process_group()
        elif self.kind == "horovod":
            self.hvd.shutdown()


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_val = int(len(labels) * VALIDATION_FRACTION)
    val, train = order[:n_val], order[n_val:]
    return images[train], labels[train], images[val], labels[val]


class Trainer:
    def __init__(self, hp: dict[str, Any], seed: int, world: World, device: torch.device) -> None:
        self.hp, self.seed, self.world, self.device = hp, seed, world, device
        self.x_train, self.y_train, self.x_val, self.y_val = load_data()
        self.batch = int(hp["batch_size"])
        self.per_rank = self.batch // world.size
        self.batches_per_epoch = len(self.y_train) // self.batch
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.model = Net(int(hp["channels"]), float(hp["dropout"])).to(device)
        self.optimizer: Any = torch.optim.SGD(
            self.model.parameters(),
            lr=float(hp["lr"]),
            momentum=float(hp["momentum"]),
            weight_decay=float(hp["weight_decay"]),
        )
        torch.manual_seed(seed * 7919 + world.rank + 1)  # dropout differs per rank
        self.net: nn.Module = self.model
        if world.kind == "torch":
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model)
        elif world.kind == "horovod":
            world.hvd.broadcast_parameters(self.model.state_dict(), root_rank=0)
            world.hvd.broadcast_optimizer_state(self.optimizer, root_rank=0)
            self.optimizer = world.hvd.DistributedOptimizer(
                self.optimizer, named_parameters=self.model.named_parameters()
            )
        self.last_train_loss = float("nan")

    def steps_per_unit(self) -> int:
        unit = report.length_unit()
        if unit == "epochs":
            return self.batches_per_epoch
        if unit == "batches":
            return 1
        raise SystemExit(f"length unit {unit!r} is not supported by this example (batches, epochs)")

    def batch_indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.batches_per_epoch)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.y_train), generator=generator)
        global_batch = order[position * self.batch:(position + 1) * self.batch]
        return global_batch[self.world.rank::self.world.size][: self.per_rank]

    def train_unit(self, length: int) -> None:
        """Train one length unit: the global steps of unit `length` (0-based)."""
        self.net.train()
        per_unit = self.steps_per_unit()
        losses = []
        for step in range(length * per_unit, (length + 1) * per_unit):
            index = self.batch_indices(step)
            x, y = self.x_train[index].to(self.device), self.y_train[index].to(self.device)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.net(x), y)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
        self.last_train_loss = float(torch.stack(losses).mean())

    def validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            logits = self.model(self.x_val.to(self.device))
            y = self.y_val.to(self.device)
            loss = F.cross_entropy(logits, y).item()
            accuracy = (logits.argmax(1) == y).float().mean().item()
        return {"loss": loss, "accuracy": accuracy, "train_loss": self.last_train_loss}

    def save(self, length: int) -> None:
        rng_states = self.world.gather(self.rng_state())  # collective: every rank
        with report.checkpoint(length) as directory:
            if self.world.rank == 0:
                state = {
                    "length": length,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "rng": rng_states,
                    "world_size": self.world.size,
                    "hp": self.hp,
                }
                torch.save(state, directory / "state.pt")

    def rng_state(self) -> dict[str, Any]:
        """CPU and (on a GPU) CUDA generator states: dropout draws from the device's one."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def load(self, directory: Any) -> int:
        # Loaded on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest.
        state = torch.load(directory / "state.pt", map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["world_size"] == self.world.size:
            rng = state["rng"][self.world.rank]
            torch.set_rng_state(rng["cpu"])
            if rng["cuda"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        return int(state["length"])

    def checksum(self) -> float:
        with torch.no_grad():
            return float(sum(p.double().sum().item() for p in self.model.parameters()))


def pick_device(world: World) -> torch.device:
    wanted = os.environ.get("DIGITS_DEVICE", "auto")
    if wanted != "cpu" and torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True  # resumed runs must equal uninterrupted ones
        torch.backends.cudnn.benchmark = False
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def validate_and_save(trainer: Trainer, length: int) -> None:
    if trainer.world.rank == 0:
        report.report_validation(length, trainer.validate())
    trainer.save(length)


def train(trainer: Trainer) -> None:
    world = trainer.world
    resume = report.resume_from()
    length = trainer.load(resume) if resume is not None else report.start_length()
    default_target = STANDALONE_EPOCHS * (1 if report.length_unit() == "epochs" else trainer.batches_per_epoch)
    target = report.target_length(default_target) or default_target
    rungs = set(report.report_at())
    while True:
        while length < target:
            if world.any(report.should_stop()):
                validate_and_save(trainer, length)
                return
            trainer.train_unit(length)
            length += 1
            report.report_training(length, {"loss": trainer.last_train_loss})
            if length in rungs and length < target:
                validate_and_save(trainer, length)
        validate_and_save(trainer, length)
        raised = world.from_chief(report.next_target() if world.rank == 0 else None)
        if raised is None:
            return
        target = int(raised)


def main() -> int:
    torch.set_num_threads(int(os.environ.get("DIGITS_THREADS", "1")))
    hp = report.params(DEFAULTS)
    world = World()
    if int(hp["batch_size"]) < world.size or int(hp["channels"]) < 1:
        report.invalid_hyperparameters(
            f"batch_size {hp['batch_size']} / channels {hp['channels']} cannot train on {world.size} ranks"
        )
    device = pick_device(world)
    # Where the trial trains, in its log: a GPU job that fell back to the CPU is visible at once.
    print(f"rank={world.rank} device={device} "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
    trainer = Trainer(hp, report.seed() or 0, world, device)
    train(trainer)
    print(f"rank={world.rank} world_size={world.size} param_checksum={trainer.checksum()!r}", flush=True)
    world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
