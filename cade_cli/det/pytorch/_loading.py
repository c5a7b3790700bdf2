"""Loads the Trial class an entrypoint names (`model_def:MyTrial`), with errors that say where.

The module is imported from the working directory (the spec's directory in a cade job).
A Trial type other than PyTorchTrial stops here with what is missing and how to port it.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

from cade_cli.det.pytorch._trial import PyTorchTrial
from cade_cli.errors import TrialClassError
from cade_cli.plugins import load

SHIM = Path(__file__).resolve().parents[1] / "shim"
_PORTING = ("cade runs det.pytorch.PyTorchTrial classes; port the model to a PyTorchTrial, or write a "
            "script that trains it and reports through the Determined Core API (det.core.init) or "
            "cade_cli.report, and make the entrypoint that script (e.g. `python3 train.py`)")
_OTHER_TRIALS = {
    "TFKerasTrial": "determined.keras", "DeepSpeedTrial": "determined.pytorch.deepspeed",
    "EstimatorTrial": "determined.estimator", "TFKerasTrialContext": "determined.keras",
}
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)'")
_UNSUPPORTED_MODULES = ("determined.keras", "determined.estimator", "determined.pytorch.deepspeed",
                        "determined.tensorflow", "determined.pytorch.lightning", "determined.horovod")


def use_shim() -> None:
    """`import determined` finds cade's package first (even beside a real installation)."""
    if str(SHIM) not in sys.path:
        sys.path.insert(0, str(SHIM))


def load_trial_class(entry: str, directory: Path | None = None) -> type[PyTorchTrial]:
    module_name, _, class_name = entry.partition(":")
    if not module_name or not class_name:
        raise TrialClassError(f"{entry!r}: expected MODULE:CLASS, e.g. model_def:MyTrial")
    directory = Path(directory or Path.cwd()).resolve()
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    module = _import(entry, module_name, directory)
    where = _file_of(module)
    found = getattr(module, class_name, None)
    if found is None:
        classes = sorted(name for name, value in vars(module).items()
                         if inspect.isclass(value) and value.__module__ == module.__name__)
        raise TrialClassError(f"{where}: no class {class_name!r} in module {module_name!r} "
                              f"(it defines: {', '.join(classes) or 'no class'})",
                              hint=f"the entrypoint names {entry!r}")
    if not inspect.isclass(found) or not issubclass(found, PyTorchTrial):
        raise _not_a_trial(found, class_name, where)
    return found


def _import(entry: str, module_name: str, directory: Path) -> Any:
    try:
        return load(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise TrialClassError(f"{entry!r}: no module {module_name!r} in {directory}",
                                  hint="the entrypoint runs in the spec's directory; the model definition "
                                       f"must be there as {module_name.replace('.', '/')}.py") from None
        if missing.startswith(_UNSUPPORTED_MODULES):
            raise TrialClassError(f"{entry!r}: the model definition imports {missing}, which cade does "
                                  "not provide", hint=_PORTING) from None
        raise TrialClassError(f"{entry!r}: the model definition imports {missing!r}, which is not "
                              "installed", hint=f"install it where the job runs ({err})") from None
    except ImportError as err:
        source = getattr(err, "name", "") or ""
        if source.startswith("determined"):
            # `from determined import keras`: the message names what was asked for.
            asked = _CANNOT_IMPORT.search(str(err))
            missing = f"{source}.{asked.group(1)}" if asked else source
            raise TrialClassError(f"{entry!r}: the model definition imports {missing}, which cade does not "
                                  "provide", hint=_PORTING) from None
        raise
    except SyntaxError as err:
        raise TrialClassError(f"{err.filename}:{err.lineno}: syntax error in the model definition: "
                              f"{err.msg}") from None


def _not_a_trial(found: Any, class_name: str, where: str) -> TrialClassError:
    if inspect.isclass(found):
        line = _line_of(found)
        bases = [base.__name__ for base in found.__mro__[1:] if base is not object]
        other = next((name for name in bases if name in _OTHER_TRIALS), None)
        if other is not None:
            return TrialClassError(f"{where}:{line}: {class_name} is a {other} ({_OTHER_TRIALS[other]}), "
                                   "which cade does not run", hint=_PORTING)
        return TrialClassError(f"{where}:{line}: {class_name} is not a det.pytorch.PyTorchTrial subclass "
                               f"(its bases: {', '.join(bases) or 'none'})",
                               hint="subclass determined.pytorch.PyTorchTrial, or make the entrypoint "
                                    "a command such as `python3 train.py`")
    return TrialClassError(f"{where}: {class_name} is a {type(found).__name__}, not a PyTorchTrial class",
                           hint="the entrypoint MODULE:CLASS names a class")


def _file_of(module: Any) -> str:
    path = getattr(module, "__file__", None)
    return str(Path(path).resolve()) if path else module.__name__


def _line_of(cls: type) -> int:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return 0
