"""Stage 4: data parallel with torch.distributed; metrics gathered to the chief, which
reports them; a sharded checkpoint every rank writes its own file into."""

import logging

import determined as det
import torch
import torch.distributed as dist
from model import batch, data, evaluate, make_model


def main(core_context: det.core.Context, info: det.ClusterInfo) -> None:
    rank, size = core_context.distributed.rank, core_context.distributed.size
    hparams = info.trial.hparams
    x, y, vx, vy = data(rank, size)
    model = make_model(int(hparams["width"]))
    optimizer = torch.optim.SGD(model.parameters(), lr=float(hparams["lr"]))
    step = 0
    for op in core_context.searcher.operations():
        while step < op.length:
            step += 1
            bx, by = batch(x, y, step, 16)
            loss = torch.nn.functional.cross_entropy(model(bx), by)
            optimizer.zero_grad()
            loss.backward()
            for parameter in model.parameters():   # average the gradients of all ranks
                dist.all_reduce(parameter.grad)
                parameter.grad /= size
            optimizer.step()
            losses = core_context.distributed.gather(loss.item())
            if rank == 0 and step % 10 == 0:
                core_context.train.report_training_metrics(step, {"loss": sum(losses) / size})
        metrics = evaluate(model, vx, vy)
        node = info.container_addrs[info.container_rank]
        hosts = core_context.distributed.allgather(f"{rank}@{node}")
        local = core_context.distributed.allgather_local(rank)
        # One write (end="" and the newline inside): all ranks share the job's stdout.log.
        print(f"rank={rank} size={size} allgather={','.join(hosts)} local={local}\n", end="",
              flush=True)
        with core_context.checkpoint.store_path({"steps_completed": step, f"rank{rank}": True},
                                                shard=True) as (path, _):
            torch.save(model.state_dict(), path / f"model-rank{rank}.pt")
        if rank == 0:
            core_context.train.report_validation_metrics(step, metrics)
            op.report_completed(metrics["validation_loss"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=det.LOG_FORMAT)
    dist.init_process_group("gloo")
    info = det.get_cluster_info()
    assert info is not None, "run this under cade (a torch launcher sets the ranks)"
    distributed = det.core.DistributedContext.from_torch_distributed()
    with det.core.init(distributed=distributed) as core_context:
        main(core_context, info)
    dist.barrier()
    dist.destroy_process_group()
