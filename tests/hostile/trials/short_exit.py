"""Reports length 1 of its target and exits 0 unasked, every time (issue item 2)."""
import common

if common.hostile():
    common.write_raw(b'{"kind": "segment_end", "length": 1}\n')
