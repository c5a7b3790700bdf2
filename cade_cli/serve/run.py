"""The server process: TensorBoard or JupyterLab, started in-process where it runs.

`python -m cade_cli.serve.run {tensorboard,notebook} --dir DIR ...` is what a server job
runs on its node; `cade tensorboard` / `cade notebook` without `--job` call the same
functions in the foreground. When the server answers, `DIR/server.json` (mode 0600) says
where: the node, the address it is bound to, the port and the URL with its secret.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cade_cli.errors import CadeError, MissingExtraError, logged_exit
from cade_cli.jobs.rundir import write_json_atomic

SERVER_FILE = "server.json"
BINDS = ("loopback", "node")
LOOPBACK = "127.0.0.1"
KINDS = ("tensorboard", "notebook")


@dataclass(frozen=True)
class ServerRecord:
    """Where a running server listens; written once it answers HTTP."""

    kind: str          # tensorboard | notebook
    node: str          # the machine it runs on (the compute node's name in a job)
    host: str          # the address it is bound to (never 0.0.0.0)
    port: int
    path: str          # what to open after the tunnel: /<secret prefix>/ or /lab?token=...
    pid: int
    started: float
    bind: str = "loopback"   # loopback | node (what was asked; a node's name may resolve to 127.x)

    @property
    def url(self) -> str:
        """The URL on the user's side of the tunnel (the same port, forwarded)."""
        return f"http://127.0.0.1:{self.port}{self.path}"


def tunnel_line(record: ServerRecord, login: str, here: str) -> str:
    """The ssh command that forwards the server's port to the user's machine through the
    login node `login` (user@host); `here` is the name of the machine asking."""
    forward = f"{record.port}:{record.host}:{record.port}"
    if record.bind == "loopback" and record.node != here:
        # Bound to the compute node's loopback: only a hop onto that node reaches it.
        return f"ssh -N -J {login} -L {forward} {record.node}"
    return f"ssh -N -L {forward} {login}"


# What each server needs installed: (its name, the module, the cade extra that installs it).
NEEDS = {"tensorboard": ("TensorBoard", "tensorboard", "tensorboard"),
         "notebook": ("JupyterLab", "jupyterlab", "notebook")}


def require_server(kind: str) -> None:
    """Refuse (exit 6, naming the extra) when the server's package is not installed; checked
    before a job is submitted, since the job runs this same Python."""
    name, module, extra = NEEDS[kind]
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"running {name}", extra, module)


def read_record(directory: Path) -> ServerRecord | None:
    try:
        return ServerRecord(**json.loads((Path(directory) / SERVER_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        raise CadeError(f"{Path(directory) / SERVER_FILE} is unreadable ({err})")


def node_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def bind_address(bind: str) -> str:
    """The address to listen on: loopback, or this node's own address (never all interfaces)."""
    if bind == "loopback":
        return LOOPBACK
    address = socket.gethostbyname(socket.gethostname())
    if address in ("0.0.0.0", ""):
        raise CadeError(f"this node's name resolves to {address!r}",
                        hint="use --bind loopback and the ssh -J tunnel")
    return address


def free_port(host: str) -> int:
    """A port free on `host` now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when something answers HTTP at `url` (any status: 403 answers too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def announce_when_up(directory: Path, record: ServerRecord, probe: str,
                     on_ready: Callable[[ServerRecord], None], timeout: float = 300.0) -> None:
    """Wait (in a thread) until `probe` answers, then write server.json and call `on_ready`."""
    def wait() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if answers(probe):
                write_json_atomic(Path(directory) / SERVER_FILE, asdict(record))
                on_ready(record)
                return
            time.sleep(0.2)
    threading.Thread(target=wait, daemon=True, name="cade-announce").start()


# -- TensorBoard ----------------------------------------------------------------------------

def refresh_log(ledger_path: str | None, refs: Sequence[int | str], logdir: Path) -> int:
    """Append what is new in the experiments `refs` (all when empty) to the log at `logdir`."""
    from cade_cli.store.ledger import Ledger
    from cade_cli.views.model import read_experiment
    from cade_cli.views.tblog import TensorBoardLog

    ledger = Ledger(ledger_path, create=False)
    try:
        chosen = [ledger.find_experiment(ref) for ref in refs] or ledger.experiments()
        return TensorBoardLog(logdir).update(read_experiment(ledger, exp) for exp in chosen)
    finally:
        ledger.close()


def run_tensorboard(directory: Path, ledger_path: str | None, refs: Sequence[int | str],
                    *, interval: float = 30.0, bind: str = "loopback",
                    on_ready: Callable[[ServerRecord], None] = lambda record: None,
                    rounds: int | None = None) -> None:
    """Write the experiments' TensorBoard log under `directory/logs`, serve it, and append
    what the experiments record every `interval` seconds (`rounds`: stop after that many)."""
    require_server("tensorboard")
    from tensorboard import program

    logdir = Path(directory) / "logs"
    refresh_log(ledger_path, refs, logdir)
    host = bind_address(bind)
    if host != LOOPBACK:
        raise CadeError("TensorBoard has no login: it listens on the loopback address only")
    port, prefix = free_port(host), "/" + secrets.token_urlsafe(18)
    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", str(logdir), "--host", host, "--port", str(port),
                          "--path_prefix", prefix, "--reload_interval", str(min(interval, 30))])
    board.launch()
    record = ServerRecord("tensorboard", node_name(), host, port, prefix + "/", os.getpid(),
                          time.time(), bind)
    announce_when_up(directory, record, f"http://{host}:{port}{prefix}/", on_ready)
    done = 0
    while rounds is None or done < rounds:
        time.sleep(interval)
        refresh_log(ledger_path, refs, logdir)
        done += 1


# -- JupyterLab -----------------------------------------------------------------------------

def run_notebook(directory: Path, workdir: Path, *, bind: str = "loopback",
                 on_ready: Callable[[ServerRecord], None] = lambda record: None) -> None:
    """JupyterLab with a fresh token, in this process, until it is stopped."""
    require_server("notebook")
    from jupyterlab.labapp import LabApp

    host = bind_address(bind)
    port, token = free_port(host), secrets.token_urlsafe(24)
    # The token goes through the environment, not the command line that `ps` shows everyone.
    os.environ["JUPYTER_TOKEN"] = token
    argv = [f"--ServerApp.ip={host}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False", f"--ServerApp.root_dir={workdir}"]
    if os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")
    record = ServerRecord("notebook", node_name(), host, port, f"/lab?token={token}",
                          os.getpid(), time.time(), bind)
    announce_when_up(directory, record, f"http://{host}:{port}/api", on_ready)
    LabApp.launch_instance(argv=argv)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} cade server: {message}", file=sys.stderr,
          flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cade_cli.serve.run KIND --dir DIR ...`: a server job's process."""
    parser = argparse.ArgumentParser(prog="python -m cade_cli.serve.run")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--bind", choices=BINDS, default="loopback")
    parser.add_argument("--ledger", default=None)
    parser.add_argument("--experiment", action="append", default=[])
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    ready = lambda record: _log(f"{record.kind} answers on {record.node} {record.host}:{record.port}")

    def run_it() -> None:
        if args.kind == "tensorboard":
            refs = [int(r) if r.isdigit() else r for r in args.experiment]
            run_tensorboard(args.dir, args.ledger, refs, interval=args.interval, bind=args.bind,
                            on_ready=ready)
        else:
            run_notebook(args.dir, args.workdir, bind=args.bind, on_ready=ready)

    return logged_exit(run_it, _log)

if __name__ == "__main__":
    sys.exit(main())
