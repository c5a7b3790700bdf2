"""`determined.core` inside a cade job: cade_cli.det.core."""

from cade_cli.det.core import *
from cade_cli.det.core import __all__  # noqa: F401
