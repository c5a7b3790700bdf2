"""Reports a validation far past its target, with the best loss of all (issue item 3)."""
import common

if common.hostile():
    common.write_raw(b'{"kind": "validation", "length": 20000, "metrics": {"loss": 0.0}}\n'
                     b'{"kind": "segment_end", "length": 20000}\n')
