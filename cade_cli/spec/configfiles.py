"""Where the settings files are, and whether there is one to read.

Standard library only: a read command (`cade status`, `best`, `top`) checks the settings
before it reads the ledger, and loads the YAML reader only when a settings file is there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SITE_CONFIG = "/etc/cade/config.yaml"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("CADE_CONFIG"):
        return Path(env["CADE_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "cade" / "config.yaml"


def site_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("CADE_SITE_CONFIG") or SITE_CONFIG).expanduser()


def settings_files_to_read(environ: Mapping[str, str] | None = None) -> bool:
    """Whether loading the settings has a file to read (or a named one to find missing):
    False only when neither variable names a file other than /dev/null and neither default
    file exists."""
    env = os.environ if environ is None else environ
    for path, variable in ((site_config_path(env), "CADE_SITE_CONFIG"),
                           (config_path(env), "CADE_CONFIG")):
        named = bool(env.get(variable))
        if (named and str(path) != os.devnull) or (not named and path.exists()):
            return True
    return False


def check_settings(environ: Mapping[str, str] | None = None) -> None:
    """Raise what loading the settings would (SpecError, exit 2); costs a stat or two when
    there is no settings file to read."""
    if settings_files_to_read(environ):
        from cade_cli.spec.settings import load_settings

        load_settings(environ)
