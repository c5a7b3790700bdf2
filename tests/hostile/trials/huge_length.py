"""Reports a validation at length 10**30, then exits 0 (issue item 1)."""
import common

if common.hostile():
    common.write_raw(b'{"kind": "validation", "length": 1000000000000000000000000000000, '
                     b'"metrics": {"loss": 0.1}}\n')
