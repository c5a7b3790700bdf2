"""`determined.pytorch` under cade: the PyTorchTrial harness of cade_cli.det.pytorch."""

from cade_cli.det.pytorch import *
from cade_cli.det.pytorch import __all__  # noqa: F401
