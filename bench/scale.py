"""Ten thousand trials, a million metric rows: build a large ledger and time every command.

    python bench/scale.py build --trials 1000 --metrics-per-trial 120 --out /tmp/scale-1k
    python bench/scale.py time /tmp/scale-1k [--runs 3] [--only status --only top ...]

`build` writes a finished ASHA experiment into OUT/.cade through cade's own engine and
ledger code (scale_build.py); `time` runs status, best, top, plot, report, both exports and
the driver's sync passes against it and prints a markdown table: min and median seconds of
`--runs` runs and each command's peak resident memory (scale_time.py). Results:
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import scale_build
import scale_time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write a finished ASHA experiment")
    build.add_argument("--trials", type=int, required=True)
    build.add_argument("--metrics-per-trial", type=int, default=100)
    build.add_argument("--out", type=Path, required=True)
    timing = commands.add_parser("time", help="time every command on a built directory")
    timing.add_argument("directory", type=Path)
    timing.add_argument("--runs", type=int, default=3)
    timing.add_argument("--only", action="append", default=[], metavar="WORD",
                        help="time only the rows whose label holds WORD, e.g. status, top, "
                             "sync (repeatable; default: every row)")
    sync = commands.add_parser("_sync", help=argparse.SUPPRESS)
    sync.add_argument("directory", type=Path)
    sync.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    if args.command == "build":
        if (args.out / ".cade").exists():
            parser.error(f"{args.out}/.cade exists already: choose another --out")
        built = scale_build.build(args.trials, args.metrics_per_trial, args.out)
        print(f"built {built['trials']} trials, {built['metric_rows']} metric rows in "
              f"{built['seconds']:.1f} s into {args.out}/.cade")
        return 0
    if args.command == "_sync":
        print(json.dumps(scale_time.sync_child(args.directory.absolute(), args.runs)))
        return 0
    results = scale_time.time_all(args.directory, args.runs, tuple(args.only))
    print(scale_time.table(results))
    return 0 if all(row.get("ok", True) for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
