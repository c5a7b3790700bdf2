"""`cade notebook --job` and `cade tensorboard --job`: real servers in batch jobs (the test
Slurm, the local backend) that answer on their node, refuse requests without their secret,
never listen on all interfaces, run cade in the notebook's kernel, and stop when asked."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from browser import CHROMIUM, rendered_text
from fixtures_ledger import all_experiments, write_ledger
from netcheck import listening_addresses
from slurm_fixtures import cade, cade_env, require_slurm, wait_for

pytest.importorskip("jupyterlab")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_ledger(tmp_path / "ledger.db", all_experiments()).close()
    return tmp_path


def started(output: str) -> dict[str, str]:
    """The name, URL and tunnel line `cade ... --job` printed."""
    found = {"name": re.search(r"submitted (\S+) as", output),
             "url": re.search(r"open:\s+(\S+)", output),
             "tunnel": re.search(r"tunnel:\s+(.+)", output),
             "seconds": re.search(r"ready after ([\d.]+) s", output)}
    assert all(found.values()), output
    return {key: match.group(1) for key, match in found.items() if match}


def status(url: str, **headers: str) -> tuple[int, str]:
    """HTTP status and redirect target of a GET (redirects not followed)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=30) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Location", "")


def run_in_kernel(port: int, token: str, code: str) -> str:
    """Start a kernel through the server's REST API, run `code`, return what it printed."""
    websocket = pytest.importorskip("websocket")
    auth = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    base = f"http://127.0.0.1:{port}/api/kernels"
    request = urllib.request.Request(base, data=b"{}", headers=auth, method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        kernel = json.load(answer)["id"]
    channel = websocket.create_connection(
        f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}", timeout=120)
    msg_id = uuid.uuid4().hex
    channel.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    printed = []
    while True:
        message = json.loads(channel.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["header"]["msg_type"]
        if kind == "stream":
            printed.append(message["content"]["text"])
        elif kind == "error":
            raise AssertionError("\n".join(message["content"]["traceback"]))
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            break
    channel.close()
    urllib.request.urlopen(urllib.request.Request(f"{base}/{kernel}", headers=auth,
                                                  method="DELETE"), timeout=30)
    return "".join(printed)


def answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slurm
def test_notebook_job_on_slurm(workdir: Path) -> None:
    require_slurm()
    env = cade_env(workdir)
    begun = time.time()
    shown = started(cade(workdir, "notebook", "--job", "--time", "10", env=env).stdout)
    print(f"cade notebook --job: {time.time() - begun:.1f} s to a reachable server "
          f"(reported {shown['seconds']} s)")
    port, token = int(shown["url"].split(":")[2].split("/")[0]), shown["url"].split("token=")[1]
    assert shown["tunnel"].startswith("ssh -N -J ") and f"-L {port}:127.0.0.1:{port} node" in shown["tunnel"]
    assert listening_addresses(port) == {"127.0.0.1"}
    # Without the token: the page sends to the login form, the API refuses.
    assert status(f"http://127.0.0.1:{port}/lab") == (302, "/login?next=%2Flab")
    assert status(f"http://127.0.0.1:{port}/api/contents")[0] == 403
    assert status(f"http://127.0.0.1:{port}/api/contents?token=wrong")[0] == 403
    assert status(shown["url"])[0] == 200
    printed = run_in_kernel(port, token, "import os, cade_cli.store.ledger as l\n"
                            "print(l.Ledger(None, create=False).path, os.environ['CADE_LEDGER'])")
    assert printed.split() == [str(workdir / "ledger.db")] * 2
    if CHROMIUM is not None or os.environ.get("CI"):      # a real browser: the page, the login
        assert "File" in rendered_text(shown["url"], "Python 3 (ipykernel)")
        login = rendered_text(f"http://127.0.0.1:{port}/lab", "Password or token")
        assert "Python 3 (ipykernel)" not in login
    listed = cade(workdir, "notebook", "--list", env=env).stdout
    assert re.search(rf"{shown['name']}\s+slurm\s+\d+\s+running\s+{re.escape(shown['url'])} on node", listed)
    cade(workdir, "notebook", "--stop", shown["name"], env=env)
    wait_for("the notebook to stop answering", lambda: not answers(port), timeout=60)
    ended = rf"{shown['name']}\s+slurm\s+\d+\s+(cancelled|completed)\s+-"   # once Slurm says so
    wait_for("the job to end", lambda: re.search(ended, cade(workdir, "notebook", "--list",
                                                             env=env).stdout), timeout=60)


@pytest.mark.slurm
def test_notebook_on_the_node_address_keeps_its_token(workdir: Path) -> None:
    require_slurm()
    env = cade_env(workdir)
    shown = started(cade(workdir, "notebook", "--job", "--bind", "node", "--time", "10",
                         env=env).stdout)
    try:
        node_address = socket.gethostbyname(socket.gethostname())
        port = int(shown["url"].split(":")[2].split("/")[0])
        assert listening_addresses(port) == {node_address} and "0.0.0.0" not in listening_addresses(port)
        assert shown["tunnel"] == f"ssh -N -L {port}:{node_address}:{port} {shown['tunnel'].split()[-1]}"
        assert status(f"http://{node_address}:{port}/api/contents")[0] == 403
    finally:
        cade(workdir, "notebook", "--stop", shown["name"], env=env)


def test_tensorboard_job_on_the_local_backend(workdir: Path) -> None:
    env = cade_env(workdir, CADE_SCHEDULER="local")
    shown = started(cade(workdir, "tensorboard", "2", "--job", "--backend", "local",
                         "--interval", "2", env=env).stdout)
    port = int(shown["url"].split(":")[2].split("/")[0])
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        assert shown["tunnel"].startswith("ssh -N -L ")    # the same machine: no hop
        assert status(f"http://127.0.0.1:{port}/")[0] == 404
        server_dir = workdir / "servers" / shown["name"]     # the secret: its owner's only
        assert (server_dir.stat().st_mode & 0o777, (server_dir / "server.json").stat().st_mode & 0o777) == (0o700, 0o600)
        body = json.dumps({"experimentName": ""}).encode()
        request = urllib.request.Request(shown["url"] + "data/plugin/hparams/experiment",
                                         data=body, headers={"Content-Type": "application/json"})

        def hparams() -> set[str]:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return {h["name"] for h in json.load(answer).get("hparamInfos", [])}
        assert {"lr", "optimizer.name", "experiment"} <= wait_for("the HParams", hparams, 60)
    finally:
        cade(workdir, "tensorboard", "--stop", shown["name"], env=env)
    wait_for("TensorBoard to stop answering", lambda: not answers(port), timeout=60)


@pytest.mark.parametrize("backend, marker", [("local", None), ("slurm", "#SBATCH"), ("pbs", "#PBS")])
def test_server_job_scripts(tmp_path: Path, backend: str, marker: str | None) -> None:
    """Each backend's server job script: its directives (GPUs, time, logs) and the command."""
    from cade_cli.jobs import render
    from cade_cli.serve.jobs import ServerJobOptions, directives

    options = ServerJobOptions(time_limit=5400, gpus=2, cpus=4, partition="gpu", account="p1")
    lines = directives(backend, "cade-notebook-1-x", options, tmp_path)
    text = render.render_script(render.server_template(backend), {
        "kind": "notebook", "directory": str(tmp_path), "directives": lines,
        "environment": [("CADE_LEDGER", "/a b/ledger.db")], "workdir": str(tmp_path),
        "command": ["python", "-m", "cade_cli.serve.run", "notebook", "--dir", str(tmp_path)]})
    assert "export CADE_LEDGER='/a b/ledger.db'" in text
    assert text.rstrip().endswith(f"exec python -m cade_cli.serve.run notebook --dir {tmp_path}")
    if marker is None:
        assert lines == [] and "#SBATCH" not in text and "#PBS" not in text
        return
    shown = [line for line in text.splitlines() if line.startswith(marker)]
    expected = {"slurm": ["--gres=gpu:2", "--time=0-01:30:00", "--cpus-per-task=4",
                          "--partition=gpu", "--account=p1", f"--output={tmp_path}/stdout.log"],
                "pbs": ["-l select=1:ncpus=4:ngpus=2", "-l walltime=01:30:00", "-q gpu", "-A p1",
                        f"-o {tmp_path}/stdout.log"]}[backend]
    for directive in expected:
        assert any(line.endswith(" " + directive) for line in shown), (directive, shown)


def test_a_missing_server_package_is_named(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from cade_cli.cli import cli
    from cade_cli.serve import run

    monkeypatch.setitem(run.NEEDS, "notebook", ("JupyterLab", "no_such_module_x", "notebook"))
    result = CliRunner().invoke(cli, ["notebook", "--job", "--backend", "local", "--ledger",
                                      str(workdir / "ledger.db")])
    assert result.exit_code == 6
    assert "JupyterLab needs no_such_module_x" in result.output and "cade[notebook]" in result.output
    assert not (workdir / "servers").exists()          # nothing was submitted
