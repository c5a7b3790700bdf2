"""Job arrays on Slurm (`sbatch --array`) and PBS (`qsub -J`): what the two backends share
beyond single jobs.

An array is submitted whole: its script (jobs/array.py) holds the resource directives of one
segment plus the array range, and dispatches on the element's index to that segment's own
script. Each element is then a job of its own for cade: Slurm names it `ARRAY_INDEX`
(`123_4`), PBS `SEQ[INDEX].server` (`123[4].pbs01`); both schedulers poll, cancel and signal
elements by those ids. A pending Slurm array that squeue lists without `-r` reads
`123_[5-7,9%2]`; `expand_slurm_ids` spells it out element by element.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from cade_cli.errors import SchedulerError

PBS_DEFAULT_MAX_ARRAY_SIZE = 10000     # PBS's server default for max_array_size

_SLURM_RANGE = re.compile(r"(\d+)_\[([0-9,\-]+)(?:%\d+)?\]")
_MAX_ARRAY_SIZE = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)", re.MULTILINE)
_PBS_ARRAY = re.compile(r"(\d+)\[(\d*)\](.*)")


def array_directives(backend: str, directives: list[str], count: int) -> list[str]:
    """One segment's directives turned into a `count`-element array's (indices 0..count-1).

    PBS accepts only rerunnable arrays: `-r n` becomes `-r y`, and the array script refuses
    to run a segment a second time instead (jobs/array.py)."""
    if count < 2:
        raise ValueError("an array job has at least two elements")
    last = count - 1
    if backend == "slurm":
        return [*directives, f"--array=0-{last}"]
    if backend == "pbs":
        return [("-r y" if d == "-r n" else d) for d in directives] + [f"-J 0-{last}"]
    raise ValueError(f"the {backend} backend has no job arrays")


def chunk_sizes(count: int, max_size: int) -> list[int]:
    """How `count` segments split into arrays of at most `max_size` elements, in order."""
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    full, rest = divmod(count, max_size)
    return [max_size] * full + ([rest] if rest else [])


# -- Slurm ---------------------------------------------------------------------------------

def slurm_max_array_size(config_text: str) -> int:
    """MaxArraySize from `scontrol show config`: elements may have indices 0..size-1, so one
    array holds at most that many (0: the site allows no arrays). Slurm's default: 1001."""
    found = _MAX_ARRAY_SIZE.search(config_text)
    return int(found.group(1)) if found else 1001


def slurm_array_id(job_id: str) -> str:
    """`123` or `123_4` (an element, as squeue -r lists it) -> the array's id `123`."""
    return job_id.split("_", 1)[0]


def slurm_element_ids(array_id: str, count: int) -> dict[int, str]:
    base = slurm_array_id(array_id)
    return {index: f"{base}_{index}" for index in range(count)}


def expand_slurm_ids(job_id: str) -> list[str]:
    """`123_[0-2,5%2]` -> 123_0, 123_1, 123_2, 123_5; any other id stays as it is."""
    match = _SLURM_RANGE.fullmatch(job_id)
    if not match:
        return [job_id]
    base, spans = match.group(1), match.group(2)
    out: list[str] = []
    for span in spans.split(","):
        first, _, last = span.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            return [job_id]
        out += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return out


# -- PBS -----------------------------------------------------------------------------------

def pbs_element_ids(array_id: str, count: int) -> dict[int, str]:
    """`123[].pbs01` (what qsub prints for an array) -> {i: `123[i].pbs01`}."""
    match = _PBS_ARRAY.fullmatch(array_id)
    if not match:
        raise SchedulerError(f"not a PBS array job id: {array_id!r}",
                             hint="qsub -J prints SEQ[].server")
    seq, suffix = match.group(1), match.group(3)
    return {index: f"{seq}[{index}]{suffix}" for index in range(count)}


def is_pbs_subjob(job_id: str) -> bool:
    return "[" in job_id


def pbs_max_array_size(server_json: str) -> int:
    """`max_array_size` from `qstat -B -f -F json`; PBS's default when unset or unreadable."""
    try:
        servers = json.loads(server_json).get("Server", {})
    except (ValueError, AttributeError):
        return PBS_DEFAULT_MAX_ARRAY_SIZE
    for attributes in servers.values() if isinstance(servers, Mapping) else ():
        value = attributes.get("max_array_size") if isinstance(attributes, Mapping) else None
        if value is not None and str(value).strip().isdigit():
            return int(str(value).strip())
    return PBS_DEFAULT_MAX_ARRAY_SIZE
