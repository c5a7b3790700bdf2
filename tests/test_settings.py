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
    ("poll_interval: soon\n", "config.yaml:1: poll_interval must be a number >= 0, got 'soon'"),
    ("local_slots: many\n", "config.yaml:1: local_slots must be a whole number >= 1, got 'many'"),
    ("pol_interval: 3\n", "config.yaml:1: unknown setting 'pol_interval'; did you mean 'poll_interval'?"),
    ("- a list\n", "must be a mapping"),
    ("scheduler: [\n", "invalid YAML"),
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


def _files(tmp_path: Path, site: str, user: str = "") -> dict[str, str]:
    (tmp_path / "site.yaml").write_text(site)
    (tmp_path / "user.yaml").write_text(user)
    return {"CADE_SITE_CONFIG": str(tmp_path / "site.yaml"), "CADE_CONFIG": str(tmp_path / "user.yaml")}


def test_the_site_file_then_the_user_file_then_the_environment(tmp_path: Path) -> None:
    env = _files(tmp_path, "scheduler: slurm\npack: true\nmax_queued_jobs: 8\nstop_grace: 10\n",
                 "max_queued_jobs: 6\n")
    settings = load_settings({**env, "CADE_STOP_GRACE": "20", "CADE_COUNT_USER_JOBS": "yes"})
    assert (settings.scheduler, settings.pack, settings.max_queued_jobs, settings.stop_grace,
            settings.count_user_jobs) == ("slurm", True, 6, 20.0, True)
    assert load_settings({"CADE_SITE_CONFIG": os.devnull, "CADE_CONFIG": os.devnull}).pack is False


def test_site_limits_hold_against_the_user_and_the_environment(tmp_path: Path) -> None:
    env = _files(tmp_path, "limits:\n  min_poll_interval: 60\n  max_queued_jobs: 4\n",
                 "poll_interval: 5\nmax_queued_jobs: 100\n")
    settings = load_settings({**env, "CADE_MAX_QUEUED_JOBS": "50"})
    assert settings.max_queued_jobs == 4
    assert settings.poll_interval_for("slurm") == 60 and settings.poll_interval_for("pbs") == 60
    assert settings.poll_interval_for("local") == 5   # the floor protects the site's scheduler
    assert settings.with_overrides(max_queued_jobs=9).max_queued_jobs == 4
    # Under the limits, the user's values stand.
    relaxed = load_settings({**_files(tmp_path, "limits: {min_poll_interval: 10}\n",
                                      "poll_interval: 45\nmax_queued_jobs: 3\n")})
    assert relaxed.poll_interval_for("slurm") == 45 and relaxed.max_queued_jobs == 3


@pytest.mark.parametrize("site, user, needle", [
    ("scheduler: slurm\nlimits:\n  max_queued_jobs: 0\n", "",
     "site.yaml:3: limits.max_queued_jobs must be a whole number >= 1"),
    ("limits:\n  min_poll: 5\n", "", ("site.yaml:2: unknown setting 'limits.min_poll'; "
                                     "did you mean 'min_poll_interval'?")),
    ("limits: 5\n", "", "site.yaml:1: limits must be a mapping"),
    ("pack: maybe\n", "", "site.yaml:1: pack must be true or false"),
    ("", "scheduler: slurm\nlimits:\n  max_queued_jobs: 4\n",
     "user.yaml:2: limits can only be set in the site file"),
    ("", "stop_grace: 1\nstop_grace: 2\n", "user.yaml:2: stop_grace: duplicate key"),
])
def test_a_bad_site_or_user_value_is_located(tmp_path: Path, site: str, user: str,
                                             needle: str) -> None:
    with pytest.raises(SpecError) as err:
        load_settings(_files(tmp_path, site, user))
    assert needle in err.value.message and err.value.exit_code == 2


def test_every_bad_setting_is_reported_at_once(tmp_path: Path) -> None:
    env = _files(tmp_path, "limits:\n  max_queued_jobs: 0\n",
                 "pack: maybe\nstop_grace: 1\nlocal_slotz: 4\n")
    with pytest.raises(SpecError) as err:
        load_settings({**env, "CADE_POLL_INTERVAL": "soon"})
    assert err.value.message == (
        f"{tmp_path / 'site.yaml'}:2: limits.max_queued_jobs must be a whole number >= 1, got 0\n"
        f"{tmp_path / 'user.yaml'}:1: pack must be true or false, got 'maybe'\n"
        f"{tmp_path / 'user.yaml'}:3: unknown setting 'local_slotz'; did you mean 'local_slots'?\n"
        "environment variable CADE_POLL_INTERVAL: poll_interval must be a number >= 0, got 'soon'")
    assert err.value.hint is not None and err.value.hint.startswith("known settings: ")


def test_a_named_site_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_settings({"CADE_SITE_CONFIG": str(tmp_path / "nope.yaml"), "CADE_CONFIG": os.devnull})
    assert "no such file" in err.value.message and "CADE_SITE_CONFIG" in (err.value.hint or "")
