"""Reports, then deletes its own run directory and exits 0."""
import shutil

import common

if common.hostile():
    common.write_raw(b'{"kind": "validation", "length": 1, "metrics": {"loss": 0.9}}\n')
    shutil.rmtree(common.run_dir())
