"""Stage 3: hyperparameters from the cluster info, lengths from the searcher's operations."""

import logging

import determined as det
import torch
from model import batch, data, evaluate, make_model


def main(core_context: det.core.Context, info: det.ClusterInfo) -> None:
    hparams = info.trial.hparams
    x, y, vx, vy = data()
    model = make_model(int(hparams["width"]))
    optimizer = torch.optim.SGD(model.parameters(), lr=float(hparams["lr"]))
    step = 0
    if info.latest_checkpoint is not None:
        with core_context.checkpoint.restore_path(info.latest_checkpoint) as path:
            state = torch.load(path / "state.pt")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        step = core_context.checkpoint.get_metadata(info.latest_checkpoint)["steps_completed"]
    for op in core_context.searcher.operations():
        while step < op.length:
            step += 1
            bx, by = batch(x, y, step, int(hparams["batch_size"]))
            loss = torch.nn.functional.cross_entropy(model(bx), by)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 10 == 0:
                core_context.train.report_training_metrics(step, {"loss": loss.item()})
                op.report_progress(step)
        metrics = evaluate(model, vx, vy)
        core_context.train.report_validation_metrics(step, metrics)
        with core_context.checkpoint.store_path({"steps_completed": step}) as (path, _):
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                       path / "state.pt")
        op.report_completed(metrics["validation_loss"])
        if core_context.preempt.should_preempt():
            return


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=det.LOG_FORMAT)
    info = det.get_cluster_info()
    assert info is not None, "run this under cade (or python -m cade_cli.det run)"
    with det.core.init() as core_context:
        main(core_context, info)
