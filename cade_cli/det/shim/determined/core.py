"""`determined.core` inside a cade job: cade_cli.det.core."""

from cade_cli.det.core import *  # noqa: F403
from cade_cli.det.core import __all__  # noqa: F401
