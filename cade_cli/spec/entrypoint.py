"""The spec's `entrypoint`: a command, or a Determined Trial class run in cade's harness."""

from __future__ import annotations

import ast
import os
import re
import shlex
from typing import TYPE_CHECKING, Any

from cade_cli.errors import SpecError
from cade_cli.spec.files import read_capped
from cade_cli.spec.reader import MapReader
from cade_cli.spec.searcher_config import FixedLengthConfig, config_type
from cade_cli.spec.yamlpos import Node, Problems, compose, describe

if TYPE_CHECKING:
    from cade_cli.spec.experiment import ExperimentSpec

_TRIAL_CLASS = re.compile(r"[\w.]+:[A-Za-z_]\w*")   # model_def:MyTrial
_PYTHON = re.compile(r"python[0-9.]*")


def read_entrypoint(top: MapReader) -> tuple[str, ...]:
    expected = "a command: a string or a list of strings"
    node = top.node("entrypoint", expected, required=True, why=" (what each trial runs)")
    if node is None:
        return ()
    if isinstance(node.value, list):
        words = [item.value for item in node.value]
        if not words or not all(isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in words):
            top.bad(node, "entrypoint", expected)
            return ()
        return tuple(str(word) for word in words)
    if not isinstance(node.value, str):
        top.bad(node, "entrypoint", expected)
        return ()
    try:
        argv = tuple(shlex.split(node.value))
    except ValueError as err:
        top.problems.add(node.loc, "entrypoint", f"expected a command that splits into words, "
                                                 f"found {describe(node.value)} ({err})")
        return ()
    if not argv:
        top.bad(node, "entrypoint", expected)
    return argv


def _is_trial_class(argv: tuple[str, ...]) -> bool:
    return len(argv) == 1 and bool(_TRIAL_CLASS.match(argv[0])) and "/" not in argv[0]


def check_trial_class_length(root: Node, spec: dict[str, Any], problems: Problems) -> None:
    """A Trial class trains to the searcher's length: without max_length it has none."""
    searcher = spec["searcher"]
    fixed_length = issubclass(config_type(searcher.name), FixedLengthConfig)
    if _is_trial_class(spec["entrypoint"]) and fixed_length and searcher.max_length is None:
        node = root.value["searcher"]
        problems.add(node.key_where, "searcher.max_length",
                     "missing; a Trial class entrypoint trains to the searcher's length (only a script "
                     "that decides its own length, e.g. with Trainer.fit(max_length=...), runs without it)")


def trial_harness(argv: tuple[str, ...], source: str) -> tuple[str, ...]:
    """A Determined Trial class (`model_def:MyTrial`) runs in cade's PyTorchTrial harness.

    The harness reads the experiment config from this spec's file (the job runs in its directory).
    """
    if not _is_trial_class(argv):
        return argv
    config = () if source.startswith("<") else ("--config", os.path.basename(source))
    return ("python3", "-m", "cade_cli.det.pytorch.run", *config, argv[0])


_SHELLS = ("sh", "bash", "zsh")
_VALUED_OPTIONS = ("-W", "-X")   # python options that take the next word as their value


def _script_of(argv: tuple[str, ...]) -> str | None:
    """The script file a command runs (`python3 train.py`, `bash run.sh`, `./run.sh`); None
    for a module (`python3 -m pkg`), inline code or a command found on PATH."""
    program = os.path.basename(argv[0]) if argv else ""
    if not (_PYTHON.fullmatch(program) or program in _SHELLS):
        return argv[0] if argv and "/" in argv[0] else None
    words = iter(argv[1:])
    for word in words:
        if word in ("-m", "-c"):
            return None
        if word in _VALUED_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def missing_entrypoint_file(spec: ExperimentSpec) -> str | None:
    """`FILE:LINE: entrypoint: ...` when every trial would fail, and restart max_restarts
    times, on its entrypoint: a script or model definition that is not in the spec's
    directory, or a Trial class of a type cade does not run. None when all is well or it
    cannot be told: a command on PATH, a module, or jobs that run in a container
    (`environment.image`), where the files may live in the image."""
    if spec.image:
        return None
    if spec.entrypoint[:3] == _HARNESS:
        problem = _trial_class_problem(spec.entrypoint[-1], spec.workdir)
        return f"{key_where(spec.source, 'entrypoint')}: entrypoint: {problem}" if problem else None
    script = _script_of(spec.entrypoint)
    if script is None or "$" in script or os.path.exists(os.path.join(spec.workdir, script)):
        return None
    return (f"{key_where(spec.source, 'entrypoint')}: entrypoint: no file {script!r} in {spec.workdir} "
            f"(the entrypoint runs in the spec's directory)")


_HARNESS = ("python3", "-m", "cade_cli.det.pytorch.run")
# Trial types of Determined that cade's harness does not run (it runs PyTorchTrial).
_OTHER_TRIAL_TYPES = ("TFKerasTrial", "DeepSpeedTrial", "EstimatorTrial")


def _trial_class_problem(entry: str, workdir: str) -> str | None:
    """Read from the model definition's source, never imported: it may import TensorFlow or
    DeepSpeed, which a login node need not have, and the harness says the rest in the job."""
    module, _, name = entry.partition(":")
    base = os.path.join(workdir, *module.split("."))
    path = next((p for p in (base + ".py", os.path.join(base, "__init__.py")) if os.path.isfile(p)), None)
    if path is None:
        return (f"no model definition {module.replace('.', '/')}.py in {workdir} for {entry!r} "
                f"(the entrypoint runs in the spec's directory)")
    try:
        tree = ast.parse(read_capped(path, "model definition", encoding="utf-8-sig"))
    except (SyntaxError, ValueError, SpecError):
        return None   # the harness reports it with Python's own message
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    kind = _trial_type(name, classes, set())
    if kind is None:
        return None
    return (f"{entry!r} is a {kind}; cade runs PyTorchTrial classes: port it to a PyTorchTrial, or "
            f"to a script that reports through the Core API (det.core.init) or cade_cli.report")


def _trial_type(name: str, classes: dict[str, ast.ClassDef], seen: set[str]) -> str | None:
    """The unsupported Trial type `name` derives from, through the module's own classes."""
    if name in seen or name not in classes:
        return None
    seen.add(name)
    for base in classes[name].bases:
        base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
        if base_name in _OTHER_TRIAL_TYPES:
            return str(base_name)
        found = _trial_type(str(base_name), classes, seen) if base_name else None
        if found:
            return found
    return None


def key_where(source: str, *path: str) -> str:
    """`file:line` of the spec's key at `path` (or of the deepest section of it that is there);
    the file alone when it cannot be read again."""
    if not os.path.isfile(source):   # a pipe or a spec built in Python
        return source
    node = compose(read_capped(source, "experiment spec", encoding="utf-8-sig"), source, Problems())
    where = source
    for key in path:
        node = node.value.get(key) if node is not None and isinstance(node.value, dict) else None
        if node is None:
            break
        where = node.loc.where
    return where
