"""Reports and checkpoints its target, ends its segment, then aborts (SIGABRT) as a rank
does when the process group tears down badly: the job fails after nothing is left to do."""
import os

import common

from cade_cli import report

if common.hostile():
    target = report.target_length() or 1
    report.report_validation(target, {"loss": 0.6})
    with report.checkpoint(target) as directory:
        (directory / "weights").write_text("trained\n")
    report.finish()
    os.abort()
