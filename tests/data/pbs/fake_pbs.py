#!/usr/bin/env python3
"""A tiny stand-in for PBS's qsub/qstat/qdel/qsig/qselect, for tests only.

Installed on PATH as small wrappers (`fake_pbs.py --as qsub ARGS...`) or symlinks named
after each command. Jobs run at
once as local processes; what the commands print follows OpenPBS's formats, with each job's
attributes taken from the recorded `qstat_live.json` next to this file. State lives in
$FAKE_PBS_STATE. A job whose `select=N` asks for more than $FAKE_PBS_NODES chunks stays queued
with a "Can Never Run" comment, as PBS's scheduler reports it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("FAKE_PBS_STATE", "/tmp/fake-pbs"))
SERVER = "pbs01"
UNKNOWN_RC, FINISHED_RC, BADSTATE_RC = 153, 35, 170


def job_file(seq: str) -> Path:
    return STATE / "jobs" / f"{seq}.json"


def load(seq: str) -> dict | None:
    try:
        return json.loads(job_file(seq).read_text())
    except (OSError, ValueError):
        return None


def save(seq: str, job: dict) -> None:
    tmp = job_file(seq).with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    tmp.replace(job_file(seq))


def directives(script: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in script.read_text().splitlines():
        match = re.match(r"#PBS\s+(-\w)\s*(.*)", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2).strip().strip("'\""))
    return found


def qsub(args: list[str]) -> int:
    script = Path(args[-1]).resolve()
    (STATE / "jobs").mkdir(parents=True, exist_ok=True)
    counter = STATE / "counter"
    seq = str(int(counter.read_text()) + 1 if counter.exists() else 100)
    counter.write_text(seq)
    opts = directives(script)
    select = next((v for v in opts.get("-l", []) if v.startswith("select=")), "select=1")
    chunks = int(re.match(r"select=(\d+)", select).group(1))
    job = {"name": (opts.get("-N") or [script.name])[0], "script": str(script),
           "out": (opts.get("-o") or [f"{script}.o{seq}"])[0],
           "err": (opts.get("-e") or [f"{script}.e{seq}"])[0],
           "select": select, "state": "Q", "substate": 10, "exit": None, "pid": None,
           "comment": ""}
    if chunks > int(os.environ.get("FAKE_PBS_NODES", "4")):
        job["comment"] = f"Can Never Run: Insufficient amount of resource: nodect (R: {chunks} A: 4 T: 4)"
        save(seq, job)
    elif opts.get("-J"):
        return submit_array(seq, job, opts["-J"][0], opts.get("-r", ["y"])[0])
    else:
        save(seq, job)
        start(seq)
    print(f"{seq}.{SERVER}")
    return 0


def submit_array(seq: str, job: dict, indices: str, rerunnable: str) -> int:
    """`-J A-B`: the array `seq[]` (state B) and one subjob `seq[I]` per index, each run
    with PBS_ARRAY_INDEX; PBS refuses an array that is not rerunnable."""
    if rerunnable == "n":
        print("qsub: cannot submit a job array that is not rerunnable", file=sys.stderr)
        return 1
    first, _, last = indices.partition("-")
    if int(last) <= int(first):
        print("qsub: illegal -J value", file=sys.stderr)
        return 1
    save(f"{seq}[]", dict(job, state="B", array=True))
    for index in range(int(first), int(last) + 1):
        save(f"{seq}[{index}]", dict(job, index=index))
        start(f"{seq}[{index}]")
    print(f"{seq}[].{SERVER}")
    return 0


def start(seq: str) -> None:
    subprocess.Popen([sys.executable, __file__, "--run", seq], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def run(seq: str) -> int:
    job = load(seq)
    assert job is not None
    nodefile = STATE / f"{seq}.nodes"
    nodefile.write_text("localhost\n")
    env = dict(os.environ, PBS_JOBID=f"{seq}.{SERVER}", PBS_JOBNAME=job["name"],
               PBS_NODEFILE=str(nodefile), PBS_O_WORKDIR=os.getcwd())
    if "index" in job:
        env["PBS_ARRAY_INDEX"] = str(job["index"])
    with open(job["out"], "ab") as out, open(job["err"], "ab") as err:
        proc = subprocess.Popen(["/bin/bash", job["script"]], stdout=out, stderr=err, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        job.update(state="R", substate=42, pid=proc.pid,
                   comment="Job run at Wed Nov 26 at 16:40 on (localhost:ncpus=1)")
        save(seq, job)
        code = proc.wait()
    job = load(seq) or job
    job["exit"] = code if code >= 0 else 256 - code      # killed by signal N -> 256 + N
    job["state"] = "X" if "index" in job else "F"      # X: a finished subjob
    if job["substate"] != 91:
        job["substate"] = 92
    job["comment"] += " and finished" if code == 0 else " and failed"
    save(seq, job)
    return 0


def seq_of(job_id: str) -> str:
    return job_id.split(".")[0]


def render(seq: str, job: dict) -> dict:
    template = json.loads((HERE / "qstat_live.json").read_text())["Jobs"]["101.pbs01"]
    out = copy.deepcopy(template)
    for key in ("exec_host", "exec_vnode", "resources_used", "stime", "session_id"):
        if job["state"] == "Q":
            out.pop(key, None)
    out.update(Job_Name=job["name"], job_state=job["state"], substate=job["substate"],
               comment=job["comment"], Output_Path=f"{SERVER}:{job['out']}",
               Error_Path=f"{SERVER}:{job['err']}")
    out["Resource_List"]["select"] = job["select"].removeprefix("select=")
    if job["state"] != "Q":
        out["exec_host"] = "localhost/0"
    if job["exit"] is not None:
        out["Exit_status"] = job["exit"]
    return out


def qstat(args: list[str]) -> int:
    if "-B" in args:                  # the server's attributes (max_array_size)
        print((HERE / "qstat_B.json").read_text(), end="")
        return 0
    history = "-x" in args
    ids = [a for a in args if not a.startswith("-") and a != "json"]
    jobs, rc = {}, 0
    for job_id in ids:
        job = load(seq_of(job_id))
        if job is None:
            print(f"qstat: Unknown Job Id {job_id}", file=sys.stderr)
            rc = UNKNOWN_RC
        elif job["state"] in ("F", "X") and not history:
            print(f"qstat: {job_id} Job has finished, use -x or -H to obtain historical job "
                  "information", file=sys.stderr)
            rc = FINISHED_RC
        else:
            jobs[f"{seq_of(job_id)}.{SERVER}"] = render(seq_of(job_id), job)
    if jobs:
        print(json.dumps({"timestamp": 1764175270, "pbs_version": "22.05.11",
                          "pbs_server": SERVER, "Jobs": jobs}, indent=4))
    return rc


def qdel(args: list[str]) -> int:
    rc = 0
    for job_id in args:
        seq = seq_of(job_id)
        job = load(seq)
        if job is None or job["state"] in ("F", "X"):
            print(f"qdel: Unknown Job Id {job_id}", file=sys.stderr)
            rc = UNKNOWN_RC
            continue
        job["substate"] = 91
        if job["state"] == "Q":
            job.update(state="F", comment="Job deleted by user")
        save(seq, job)
        if job["pid"]:
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
    return rc


def qsig(args: list[str]) -> int:
    name = args[args.index("-s") + 1]
    sig = getattr(signal, name if name.startswith("SIG") else f"SIG{name}")
    rc = 0
    for job_id in args[args.index("-s") + 2:]:
        job = load(seq_of(job_id))
        if job is None:
            print(f"qsig: Unknown Job Id {job_id}", file=sys.stderr)
            rc = UNKNOWN_RC
        elif job["state"] != "R":
            print(f"qsig: Request invalid for state of job {job_id}", file=sys.stderr)
            rc = BADSTATE_RC
        else:
            os.kill(job["pid"], sig)          # the batch shell only, as qsig does
    return rc


def qselect(args: list[str]) -> int:
    folder = STATE / "jobs"
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        job = json.loads(path.read_text())
        if "index" in job:
            continue                  # subjobs are listed with -J/-T only, as by PBS
        if "-x" in args or job["state"] != "F":
            print(f"{path.stem}.{SERVER}")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--run"]:
        return run(sys.argv[2])
    args = sys.argv[1:]
    command = Path(sys.argv[0]).name
    if args[:1] == ["--as"]:
        command, args = args[1], args[2:]
    handlers = {"qsub": qsub, "qstat": qstat, "qdel": qdel, "qsig": qsig, "qselect": qselect}
    return handlers[command](args)


if __name__ == "__main__":
    sys.exit(main())
