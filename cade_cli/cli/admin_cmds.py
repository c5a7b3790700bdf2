"""`cade templates list|show|render`: see the job script templates and what they produce.

Site templates come from `--template-dir` (repeatable), else from the `templates` setting
(config file or CADE_TEMPLATES). They are searched before the built-ins.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cade_cli.cli.options import json_option
from cade_cli.engine import SCHEDULER_NAMES, list_templates, template_source
from cade_cli.spec.settings import load_settings

_DIR_OPTION = click.option(
    "--template-dir", "template_dirs", multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A site template directory, searched before the built-ins (repeatable). "
         "Default: the `templates` setting.",
)


def _template_dirs(given: tuple[Path, ...]) -> tuple[Path, ...]:
    if given:
        return given
    configured = load_settings().templates
    return (Path(configured),) if configured else ()


@click.group("templates")
def templates_group() -> None:
    """Job script templates: list them, print one, or render a spec's script."""


@templates_group.command("list")
@_DIR_OPTION
@json_option('Print {"templates": [{"name", "origin", "path", "shadowed"}]}.')
def list_command(template_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Every template with its origin (site or builtin) and file."""
    found = list_templates(_template_dirs(template_dirs))
    if as_json:
        click.echo(json.dumps({"templates": [
            {"name": info.name, "origin": info.origin, "path": str(info.path),
             "shadowed": info.shadowed} for info in found]}))
        return
    for info in found:
        note = "  (shadowed by a site template)" if info.shadowed else ""
        click.echo(f"{info.name:<18} {info.origin:<8} {info.path}{note}")


@templates_group.command("show")
@click.argument("name")
@_DIR_OPTION
@json_option('Print {"name", "path", "source"}.')
def show_command(name: str, template_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Print a template's source (prefix NAME with `builtin:` for the built-in one)."""
    source, path = template_source(name, _template_dirs(template_dirs))
    if as_json:
        click.echo(json.dumps({"name": name, "path": path, "source": source}))
        return
    click.echo(source, nl=False)


@templates_group.command("render")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(sorted(SCHEDULER_NAMES)), default="slurm",
              show_default=True, help="Whose job script to render.")
@click.option("--config", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a spec value (repeatable).")
@_DIR_OPTION
@json_option('Print {"backend", "script"}.')
def render_command(spec_path: str, backend: str, overrides: tuple[str, ...],
                   template_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Print the job script SPEC's first trial segment would submit (nothing is recorded)."""
    from cade_cli.engine import dry_run_script
    from cade_cli.spec.experiment import load_spec

    spec = load_spec(spec_path, overrides)
    text = dry_run_script(spec, backend, load_settings(), _template_dirs(template_dirs))
    if as_json:
        click.echo(json.dumps({"backend": backend, "script": text}))
        return
    click.echo(text, nl=False)


def register(cli: click.Group) -> None:
    cli.add_command(templates_group)
