"""Writes to stdout without end while it trains; its report still arrives."""
import sys
import threading
import time

import common


def spew() -> None:
    line = "y" * 1023 + "\n"
    while True:
        sys.stdout.write(line)


if common.hostile():
    threading.Thread(target=spew, daemon=True).start()
    time.sleep(0.5)
    common.good()
