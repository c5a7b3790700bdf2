"""Run a Determined Core API script by hand, with cade's trial files in a local directory.

    python -m cade_cli.det run SCRIPT [ARGS...] [--hparams JSON] [--length N] [--dir DIR]

The script sees the environment of a one-trial cade job: get_cluster_info() answers, metrics
land in DIR/run/metrics.jsonl, checkpoints in DIR/checkpoints/, and a second run in the same
DIR resumes from the newest checkpoint there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SHIM = Path(__file__).resolve().parent / "shim"


def trial_environment(directory: Path, hparams: dict[str, object], length: int) -> dict[str, str]:
    run_dir = directory / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (directory / "params.json").write_text(
        json.dumps({"params": hparams, "trial": 1, "experiment": "local"}), encoding="utf-8")
    (run_dir / "control.json").write_text(
        json.dumps({"stop": False, "reason": "", "target_length": length}), encoding="utf-8")
    checkpoints = sorted((directory / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    resume = checkpoints[-1] if checkpoints else None
    return {
        "CADE_EXPERIMENT_ID": "local", "CADE_TRIAL_ID": "1", "CADE_SEGMENT": "1",
        "CADE_RUN_DIR": str(run_dir), "CADE_TRIAL_DIR": str(directory),
        "CADE_PARAMS_FILE": str(directory / "params.json"),
        "CADE_START_LENGTH": resume.name if resume else "0", "CADE_TARGET_LENGTH": str(length),
        "CADE_RESUME_FROM": str(resume or ""), "CADE_METRIC": os.environ.get("CADE_METRIC", ""),
        "CADE_LENGTH_UNIT": "batches", "CADE_NPROCS": "1", "CADE_TASKS_PER_NODE": "1",
        "CADE_SEED": "0",
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cade_cli.det", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run"])
    parser.add_argument("script")
    parser.add_argument("--hparams", default="{}", help="JSON text or a .json file")
    parser.add_argument("--length", type=int, default=1, help="the searcher operation's length")
    parser.add_argument("--dir", type=Path, default=Path(".cade-det"))
    parser.add_argument("--metric", default="", help="the searcher metric's name")
    args, script_args = parser.parse_known_args(argv)
    text = Path(args.hparams).read_text() if args.hparams.endswith(".json") else args.hparams
    env = dict(os.environ)
    env.update(trial_environment(args.dir.resolve(), json.loads(text), args.length))
    env["CADE_METRIC"] = args.metric
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SHIM), env.get("PYTHONPATH")) if p)
    command = [sys.executable, args.script, *script_args]
    os.execve(sys.executable, command, env)
    return 0  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
