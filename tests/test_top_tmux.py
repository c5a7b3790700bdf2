"""`cade top` in a real terminal (tmux): keys work, q and Ctrl-C exit 0 without a traceback,
and the terminal comes back (normal screen, canonical mode with echo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures_ledger import all_experiments, write_ledger

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None and not os.environ.get("CI"),
    reason="tmux is not installed (scripts/install-test-tools.sh installs it)")


class Tmux:
    """One private tmux server (own socket) running one session of a fixed size."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=20, check=True)
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def alternate(self) -> bool:
        return self("display-message", "-p", "-t", "top", "#{alternate_on}").strip() == "1"

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if check(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")


@pytest.fixture
def tmux_top(tmp_path: Path) -> Iterator[Tmux]:
    ledger = tmp_path / "ledger.db"
    write_ledger(ledger, all_experiments()).close()
    tmux = Tmux(f"cade-test-{uuid.uuid4().hex[:8]}")
    # After top exits, the pane shows its exit code and the terminal modes it left behind.
    command = (f"cd {REPO} && CADE_LEDGER={ledger} {sys.executable} -m cade_cli top 2 "
               "--no-sync --interval 1; echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' | "
               "grep -x -e icanon -e echo -e -icanon -e -echo | tr '\\n' ' '; echo; sleep 60")
    tmux("new-session", "-d", "-s", "top", "-x", "120", "-y", "60", command)
    try:
        yield tmux
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True,
                       timeout=20, check=False)


def assert_exited_cleanly(tmux: Tmux) -> str:
    """Checks the exit status, the screen and the terminal modes; the last screen."""
    text = tmux.wait_for(lambda s: "EXIT=" in s, "top to exit")
    assert "EXIT=0" in text
    assert "Traceback" not in text
    assert not tmux.alternate(), "left the terminal in the alternate screen"
    modes = tmux.wait_for(lambda s: "icanon" in s, "the stty report")
    assert "-icanon" not in modes.split() and "-echo" not in modes.split()
    assert "icanon" in modes.split() and "echo" in modes.split()
    return text


def test_keys_then_q(tmux_top: Tmux) -> None:
    tmux = tmux_top
    tmux.wait_for(lambda s: "digits-active (#2)" in s, "the first frame")
    assert tmux.alternate(), "the live view runs in the alternate screen"
    tmux("send-keys", "-t", "top", "s")
    tmux.wait_for(lambda s: "sort: id" in s, "the sort to change")
    tmux("send-keys", "-t", "top", "r")
    tmux.wait_for(lambda s: "sort: id (reversed)" in s, "the sort to reverse")
    tmux("send-keys", "-t", "top", "n")
    tmux.wait_for(lambda s: "digits-paused (#3)" in s, "the next experiment")
    tmux("send-keys", "-t", "top", "q")
    assert_exited_cleanly(tmux)


def test_ctrl_c_exits_quietly(tmux_top: Tmux) -> None:
    tmux = tmux_top
    tmux.wait_for(lambda s: "digits-active (#2)" in s, "the first frame")
    tmux("send-keys", "-t", "top", "C-c")
    assert "KeyboardInterrupt" not in assert_exited_cleanly(tmux)
