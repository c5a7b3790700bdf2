"""What a PyTorchTrial checkpoint holds, so that a resumed trial continues exactly.

`state_dict.pth` (Determined's file name and keys): models, optimizers, LR schedulers,
scalers, callbacks, every rank's RNG state and the number of batches trained. Written into
the directory cade_cli.report.checkpoint() publishes atomically.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from cade_cli.det.pytorch._context import PyTorchTrialContext

STATE_FILE = "state_dict.pth"

try:  # numpy is optional: a trial that uses it gets its RNG state restored too
    import numpy
except ImportError:  # pragma: no cover - numpy comes with torch almost everywhere
    numpy = None  # type: ignore[assignment]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"random": random.getstate(), "torch": torch.get_rng_state()}
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["random"])
    torch.set_rng_state(state["torch"])
    if numpy is not None and "numpy" in state:
        numpy.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_state(context: PyTorchTrialContext, callbacks: dict[str, Any]) -> dict[str, Any]:
    """Collective: every rank must call it (RNG states are gathered)."""
    return {
        "models_state_dict": [model.state_dict() for model in context.models],
        "optimizers_state_dict": [optimizer.state_dict() for optimizer in context.optimizers],
        "lr_schedulers_state_dict": [scheduler.state_dict() for scheduler in context.lr_schedulers],
        "scalers_state_dict": [scaler.state_dict() for scaler in context.scalers],
        "callbacks": {name: callback.state_dict() for name, callback in callbacks.items()},
        "rng_state": context.distributed.allgather(rng_state()),
        "trial_state": {"batches_trained": context.batches_trained, "trial_id": context.get_trial_id()},
    }


def save(directory: Path, state: dict[str, Any]) -> None:
    torch.save(state, directory / STATE_FILE)


def load(directory: Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    # Our own file, holding RNG states and optimizer state that weights_only cannot carry.
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state


def apply_state(context: PyTorchTrialContext, callbacks: dict[str, Any], state: dict[str, Any]) -> int:
    """Load `state` into the wrapped objects; returns the batches already trained."""
    _load_each("model", context.models, state["models_state_dict"])
    _load_each("optimizer", context.optimizers, state["optimizers_state_dict"])
    _load_each("LR scheduler", context.lr_schedulers, state.get("lr_schedulers_state_dict", []))
    _load_each("scaler", context.scalers, state.get("scalers_state_dict", []))
    for name, callback in callbacks.items():
        if name in state.get("callbacks", {}):
            callback.load_state_dict(state["callbacks"][name])
    ranks = state["rng_state"]
    rank = context.distributed.rank
    # A checkpoint from a run with fewer ranks: the new ranks start from rank 0's RNG state.
    restore_rng(ranks[rank] if rank < len(ranks) else ranks[0])
    batches = int(state["trial_state"]["batches_trained"])
    context.batches_trained = batches
    return batches


def _load_each(what: str, objects: list[Any], states: list[Any]) -> None:
    if len(objects) != len(states):
        raise ValueError(f"the checkpoint holds {len(states)} {what} state(s) but the trial wrapped "
                         f"{len(objects)}: it was written by a different model definition")
    for target, state in zip(objects, states):
        target.load_state_dict(state)
