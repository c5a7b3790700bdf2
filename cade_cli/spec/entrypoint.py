"""The spec's `entrypoint`: a command, or a Determined Trial class run in cade's harness."""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

from cade_cli.spec.reader import MapReader
from cade_cli.spec.searcher_config import FixedLengthConfig, config_type
from cade_cli.spec.yamlpos import Node, Problems, describe

_TRIAL_CLASS = re.compile(r"[\w.]+:[A-Za-z_]\w*")   # model_def:MyTrial


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
