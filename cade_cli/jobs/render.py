"""Job scripts from Jinja2 templates: the only importer of jinja2.

Pure: `build_context` turns a spec and a segment's facts into a context of plain strings,
`render_script` turns a template name and a context into script text. Nothing is written.

Every templated value passes the `q` filter (shlex.quote), so nothing a user typed reaches a
shell unquoted. Site template directories are searched before the built-ins; the prefix
`builtin:` names a built-in template only, so a site file may override a built-in of the same
name and still extend it: `{% extends "builtin:slurm.sbatch.j2" %}`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import shlex
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from cade_cli.errors import SpecError
from cade_cli.jobs.layout import trial_layout
from cade_cli.spec.experiment import ExperimentSpec, handed_target

BUILTIN_PREFIX = "builtin:"
# The one backend -> template map. A cluster backend's driver job template shares the
# job template's suffix: slurm.sbatch.j2 -> driver.sbatch.j2.
TEMPLATE_FOR_BACKEND = {"local": "local.sh.j2", "slurm": "slurm.sbatch.j2", "pbs": "pbs.pbs.j2"}
LAUNCHERS = ("torch", "horovod", "none")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JOB_NAME = re.compile(r"[A-Za-z0-9._-]+")


def driver_template(backend: str) -> str:
    """The driver job template of a cluster backend (`slurm` or `pbs`)."""
    return companion_template("driver", backend)


def server_template(backend: str) -> str:
    """The server job template (TensorBoard, JupyterLab): server.sh.j2 for `local`."""
    return companion_template("server", backend)


def companion_template(kind: str, backend: str) -> str:
    """`<kind>.<suffix of the backend's job template>`: slurm.sbatch.j2 -> driver.sbatch.j2."""
    return f"{kind}." + TEMPLATE_FOR_BACKEND[backend].split(".", 1)[1]


def builtin_template_dir() -> Path:
    """The directory holding the built-in templates (package data `cade_cli.templates`)."""
    return Path(str(importlib.resources.files("cade_cli.templates")))


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    origin: str          # "builtin" | "site"
    path: Path
    shadowed: bool = False   # a site template of the same name is used instead


class _SiteFirstLoader(jinja2.BaseLoader):
    """Site directories first, then the built-ins; `builtin:NAME` only the built-ins."""

    def __init__(self, site_dirs: Sequence[Path], builtin_dir: Path) -> None:
        self.site = jinja2.FileSystemLoader([str(d) for d in site_dirs]) if site_dirs else None
        self.builtin = jinja2.FileSystemLoader(str(builtin_dir))

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template.startswith(BUILTIN_PREFIX):
            return self.builtin.get_source(environment, template[len(BUILTIN_PREFIX):])
        if self.site is not None:
            try:
                return self.site.get_source(environment, template)
            except jinja2.TemplateNotFound:
                pass
        return self.builtin.get_source(environment, template)


def shell_quote(value: Any) -> str:
    """The `q` filter: one shell word, whatever the value holds."""
    return shlex.quote(str(value))


def shell_quote_args(values: Iterable[Any]) -> str:
    """The `qargs` filter: a command line of separately quoted words."""
    if isinstance(values, (str, bytes)):
        raise TypeError("qargs expects a list of words, not a string")
    return " ".join(shlex.quote(str(v)) for v in values)


def make_environment(template_dirs: Sequence[str | Path] = ()) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_SiteFirstLoader([Path(d) for d in template_dirs], builtin_template_dir()),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = shell_quote
    env.filters["qargs"] = shell_quote_args
    return env


def render_script(
    template_name: str, context: Mapping[str, Any], template_dirs: Sequence[str | Path] = ()
) -> str:
    """Render one template; a broken site template raises SpecError naming its file and line."""
    return _rendered(template_name, context, template_dirs, block=None)


def render_block(
    template_name: str, block: str, context: Mapping[str, Any],
    template_dirs: Sequence[str | Path] = (),
) -> str:
    """One block of a template as the whole template would render it: the most derived
    override, a site file's included. (A pack job runs the site's `setup` of the backend's
    job template once, for every segment it starts.)"""
    return _rendered(template_name, context, template_dirs, block=block)


def _rendered(template_name: str, context: Mapping[str, Any],
              template_dirs: Sequence[str | Path], block: str | None) -> str:
    """The template's text, or one block's; template errors located in the site's files."""
    env = make_environment(template_dirs)
    try:
        template = env.get_template(template_name)
        ctx = template.new_context(dict(context))
        try:
            text = "".join(template.root_render_func(ctx))   # follows `extends`: fills ctx.blocks
            return text if block is None else "".join(ctx.blocks[block][0](ctx))
        except Exception:  # noqa: BLE001 - as Template.render: frames rewritten to template lines
            env.handle_exception()
    except jinja2.TemplateSyntaxError as err:
        raise _template_error(err, err.filename or err.name, err.lineno, template_dirs) from None
    except jinja2.TemplateNotFound as err:
        raise SpecError(
            f"job script template {err.name!r} not found",
            hint=_search_hint(template_dirs),
        ) from None
    except jinja2.TemplateError as err:
        filename, lineno = _template_position(err.__traceback__)
        raise _template_error(err, filename, lineno, template_dirs) from None


def _template_position(tb: types.TracebackType | None) -> tuple[str | None, int | None]:
    """The innermost traceback frame that belongs to a template file (Jinja rewrites them)."""
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or "<template>" in filename:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _template_error(
    err: jinja2.TemplateError,
    filename: str | None,
    lineno: int | None,
    template_dirs: Sequence[str | Path],
) -> Exception:
    builtin = builtin_template_dir().resolve()
    in_builtin = filename is not None and Path(filename).resolve().is_relative_to(builtin)
    if in_builtin and not template_dirs:
        return err  # a broken built-in template is a bug: keep the traceback
    where = f"{filename or '<template>'}:{lineno or '?'}"
    return SpecError(
        f"job script template error at {where}: {err.message or err}",
        hint="fix the site template (see `cade templates show NAME` for the built-in one)",
    )


def _search_hint(template_dirs: Sequence[str | Path]) -> str:
    dirs = ", ".join(str(d) for d in template_dirs) or "(none)"
    return f"site template directories: {dirs}; built-ins: {builtin_template_dir()}"


def list_templates(template_dirs: Sequence[str | Path] = ()) -> list[TemplateInfo]:
    """Every template visible, site ones first; a site file shadows a built-in of that name."""
    seen: set[str] = set()
    found: list[TemplateInfo] = []
    for origin, directory in [("site", Path(d)) for d in template_dirs] + [
        ("builtin", builtin_template_dir())
    ]:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.j2")):
            found.append(TemplateInfo(path.name, origin, path, shadowed=path.name in seen))
            seen.add(path.name)
    return found


def template_source(name: str, template_dirs: Sequence[str | Path] = ()) -> tuple[str, str]:
    """(source text, file name) of the template `name` resolves to."""
    env = make_environment(template_dirs)
    assert env.loader is not None
    try:
        source, filename, _ = env.loader.get_source(env, name)
    except jinja2.TemplateNotFound:
        raise SpecError(f"no job script template named {name!r}", hint=_search_hint(template_dirs)) from None
    return source, filename or name


def directory_token(path: str | Path) -> str:
    """Six hex digits naming a directory: jobs of different ledgers get different names."""
    return hashlib.sha1(str(Path(path).absolute()).encode()).hexdigest()[:6]


def job_name(experiment_id: int | str, trial_id: int, segment: int,
             exp_root: str | Path | None = None) -> str:
    """`cade-EXP-TRIAL-SEGMENT`, plus a token of the experiment's directory when given.

    The token tells apart jobs of two ledgers (two project directories both have an
    experiment 1): a driver that adopts a job by name after a crash adopts only its own.
    """
    name = f"cade-{experiment_id}-{trial_id}-{segment}"
    if exp_root is not None:
        name += f"-{directory_token(exp_root)}"
    if not _JOB_NAME.fullmatch(name):
        raise SpecError(f"job name {name!r} holds characters a scheduler may not accept")
    return name


def cade_environment(
    spec: ExperimentSpec,
    *,
    backend: str,
    experiment_id: int | str,
    trial_id: int,
    segment: int,
    run_dir: Path,
    trial_dir: Path,
    start_length: int,
    target_length: int,
    report_at: Sequence[int],
    resume_from: str | Path | None,
    trial_seed: int,
    decision_wait: float = 0.0,
) -> dict[str, str]:
    """The CADE_* variables of docs/DEVELOPING.md, as strings; the layout is `backend`'s."""
    layout = trial_layout(spec, backend)
    return {
        "CADE_EXPERIMENT_ID": str(experiment_id),
        "CADE_TRIAL_ID": str(trial_id),
        "CADE_SEGMENT": str(segment),
        "CADE_RUN_DIR": str(run_dir),
        "CADE_TRIAL_DIR": str(trial_dir),
        "CADE_PARAMS_FILE": str(trial_dir / "params.json"),
        "CADE_START_LENGTH": str(start_length),
        # Empty when the trial decides its own length (no max_length): nothing to train to.
        "CADE_TARGET_LENGTH": str(handed_target(target_length) or ""),
        "CADE_LENGTH_UNIT": spec.searcher.length_unit,
        "CADE_REPORT_AT": ",".join(str(int(x)) for x in report_at if handed_target(x) is not None),
        "CADE_RESUME_FROM": "" if resume_from is None else str(resume_from),
        "CADE_METRIC": spec.searcher.metric,
        "CADE_LAUNCHER": spec.resources.launcher,
        "CADE_NPROCS": str(layout.ranks),
        "CADE_NODES": str(layout.nodes),
        "CADE_TASKS_PER_NODE": str(layout.ranks_per_node),
        "CADE_SEED": str(trial_seed),
        "CADE_DECISION_WAIT": f"{decision_wait:g}",
    }


def build_context(
    spec: ExperimentSpec,
    *,
    backend: str,
    job_name: str,
    cade_env: Mapping[str, str],
    directives: Sequence[str] = (),
) -> dict[str, Any]:
    """The template context: plain strings and sorted lists of plain strings."""
    for directive in directives:
        if "\n" in directive or "\r" in directive:
            raise SpecError(f"scheduler option {directive!r} spans several lines")
    user_env = _user_environment(spec)
    layout = trial_layout(spec, backend)
    run_dir = Path(cade_env["CADE_RUN_DIR"])
    return {
        "backend": backend,
        "job_name": job_name,
        "experiment_name": spec.name,
        "directives": list(directives),
        "cade_env": sorted(cade_env.items()),
        "user_env": user_env,
        "workdir": spec.workdir,
        "run_dir": str(run_dir),
        "launcher": spec.resources.launcher,
        "launcher_path": str(run_dir / "launch" / f"{spec.resources.launcher}.sh"),
        "determined_shim": str(run_dir / "launch" / "det"),
        "entrypoint": [str(a) for a in spec.entrypoint],
        "preempt_signal": spec.resources.preempt_signal,
        "preempt_notice": str(spec.resources.preempt_notice),
        "nodes": str(layout.nodes),
        "tasks_per_node": str(layout.ranks_per_node),
        "nprocs": str(layout.ranks),
        # Determined's environment.image and bind_mounts, for site templates that run a container.
        "image": spec.image or "",
        "bind_mounts": sorted(spec.bind_mounts),
    }


def _user_environment(spec: ExperimentSpec) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in spec.environment_variables:
        if not _ENV_NAME.fullmatch(name):
            raise SpecError(
                f"environment variable name {name!r} is not a valid shell name",
                hint="names use letters, digits and _ and do not start with a digit",
            )
        if name.startswith("CADE_"):
            raise SpecError(f"environment variable {name!r}: CADE_* names are set by cade")
        pairs.append((name, str(value)))
    return sorted(pairs)
