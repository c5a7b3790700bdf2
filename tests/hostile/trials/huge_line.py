"""Writes a 4 MiB line, then a good report after it (issue item 5)."""
import common

if common.hostile():
    common.write_raw(b'{"kind": "training", "pad": "' + b"x" * (4 << 20) + b'"}\n')
    common.write_raw(b'{"kind": "training", "length": 2, "metrics": {"loss": 0.7}}\n')
