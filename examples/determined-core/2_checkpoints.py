"""Stage 2: checkpoints, resuming from the latest one, and stopping when preempted."""

import json
import logging

import determined as det
import torch
from model import batch, data, evaluate, make_model

STEPS = 60


def load(core_context: det.core.Context, storage_id: str, model, optimizer) -> int:
    with core_context.checkpoint.restore_path(storage_id) as path:
        state = torch.load(path / "state.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return json.loads((path / "step.json").read_text())["step"]


def main(core_context: det.core.Context, latest_checkpoint) -> None:
    x, y, vx, vy = data()
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = 0 if latest_checkpoint is None else load(core_context, latest_checkpoint, model,
                                                    optimizer)
    while step < STEPS:
        step += 1
        bx, by = batch(x, y, step, 32)
        loss = torch.nn.functional.cross_entropy(model(bx), by)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            core_context.train.report_training_metrics(step, {"loss": loss.item()})
            core_context.train.report_validation_metrics(step, evaluate(model, vx, vy))
            with core_context.checkpoint.store_path({"steps_completed": step}) as (path, _):
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                           path / "state.pt")
                (path / "step.json").write_text(json.dumps({"step": step}))
            if core_context.preempt.should_preempt():
                return


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=det.LOG_FORMAT)
    info = det.get_cluster_info()
    assert info is not None, "run this under cade (or python -m cade_cli.det run)"
    with det.core.init() as core_context:
        main(core_context, info.latest_checkpoint)
