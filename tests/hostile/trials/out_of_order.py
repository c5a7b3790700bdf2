"""Reports length 2 after length 3, the late one with a better loss (issue item 4)."""
import common

if common.hostile():
    common.write_raw(b'{"kind": "validation", "length": 3, "metrics": {"loss": 0.8}}\n'
                     b'{"kind": "validation", "length": 2, "metrics": {"loss": 0.001}}\n')
