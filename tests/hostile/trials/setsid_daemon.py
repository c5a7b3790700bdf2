"""Starts a daemon in a new session (out of the job's process group), then trains well."""
import subprocess

import common

if common.hostile():
    daemon = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (common.run_dir().parent.parent / "daemon.pid").write_text(f"{daemon.pid}\n")
    common.good()
