"""Stage 1: report training and validation metrics."""

import logging

import determined as det
import torch
from model import batch, data, evaluate, make_model

STEPS = 60


def main(core_context: det.core.Context) -> None:
    x, y, vx, vy = data()
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(1, STEPS + 1):
        bx, by = batch(x, y, step, 32)
        loss = torch.nn.functional.cross_entropy(model(bx), by)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            core_context.train.report_training_metrics(step, {"loss": loss.item()})
            core_context.train.report_validation_metrics(step, evaluate(model, vx, vy))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=det.LOG_FORMAT)
    with det.core.init() as core_context:
        main(core_context)
