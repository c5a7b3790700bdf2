"""Reports, then fills its file-size quota (RLIMIT_FSIZE, as `ulimit -f`) mid-line."""
import resource
import signal
import sys

import common

if common.hostile():
    common.write_raw(b'{"kind": "validation", "length": 1, "metrics": {"loss": 0.9}}\n')
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    size = (common.run_dir() / "metrics.jsonl").stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))
    try:
        common.write_raw(b'{"kind": "training", "pad": "' + b"z" * 65536)
    except OSError as err:
        print(f"quota reached: {err}", file=sys.stderr)
        sys.exit(1)
