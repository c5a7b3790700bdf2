"""Settings: the config file, CADE_* overrides, defaults per backend, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cade_cli.errors import SpecError
from cade_cli.spec.settings import Settings, config_path, load_settings


def test_defaults_without_a_file() -> None:
    settings = load_settings({"CADE_CONFIG": os.devnull})
    assert settings.scheduler == "auto" and settings.max_queued_jobs == 32
    assert settings.poll_interval_for("slurm") == 30 and settings.poll_interval_for("local") == 2


def test_the_file_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "site").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text("scheduler: slurm\npoll-interval: 120\nmax_queued_jobs: 8\n"
                    "templates: ~/site\nstop_grace: 30\n")
    settings = load_settings({"CADE_CONFIG": str(path), "CADE_MAX_QUEUED_JOBS": "4",
                              "CADE_LOCAL_SLOTS": "2"})
    assert (settings.scheduler, settings.poll_interval, settings.max_queued_jobs,
            settings.stop_grace, settings.local_slots) == ("slurm", 120.0, 4, 30.0, 2)
    assert settings.templates == str(tmp_path / "site")
    assert settings.poll_interval_for("local") == 120.0


def test_the_default_path_follows_xdg() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/cade/config.yaml")


@pytest.mark.parametrize("text, needle", [
    ("scheduler: lsf\n", "scheduler must be one of auto, local, slurm, pbs"),
    ("max_queued_jobs: 0\n", "max_queued_jobs must be a whole number >= 1"),
    ("poll_interval: soon\n", "poll_interval invalid value 'soon'"),
    ("pol_interval: 3\n", "unknown setting 'pol_interval'"),
    ("- a list\n", "must be a mapping"),
    ("scheduler: [\n", "not valid YAML"),
])
def test_a_bad_file_names_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_settings({"CADE_CONFIG": str(path)})
    assert str(path) in err.value.message and needle in err.value.message
    assert err.value.exit_code == 2


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_settings({"CADE_CONFIG": os.devnull, "CADE_STOP_GRACE": "-1"})
    assert "CADE_STOP_GRACE" in err.value.message


def test_overrides_ignore_none() -> None:
    settings = Settings().with_overrides(local_slots=None, scheduler="local")
    assert (settings.scheduler, settings.local_slots) == ("local", None)
