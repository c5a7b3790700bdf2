"""Ignores SIGTERM and SIGUSR1 and never ends on its own (issue item 6)."""
import signal
import time

import common

if common.hostile():
    for name in ("SIGTERM", "SIGUSR1"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    (common.run_dir() / "hostile.pid").write_text(f"{__import__('os').getpid()}\n")
    while True:
        time.sleep(0.05)
