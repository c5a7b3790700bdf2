"""The dependency rules of docs/DEVELOPING.md, checked by walking every module's AST."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cade_cli"

PURE = ("search", "spec.experiment", "spec.yamlpos", "spec.reader", "spec.hparams",
        "spec.searcher", "spec.values", "store.records", "views.model", "views.frames")
# Which modules may import each library (dotted module names; a package covers its modules).
ONLY_IMPORTERS = {
    "sqlite3": ("store",),
    "click": ("cli",),
    "rich": ("views",),
    "yaml": ("spec",),
    "jinja2": ("jobs",),
    "subprocess": ("backends", "engine.provenance"),
}
PURE_MAY_USE = {"views.frames": {"rich"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in the file (functions included)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["cade_cli", *package][: len(package) + 2 - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, owners: tuple[str, ...]) -> bool:
    """`name` is one of `owners` or inside one (a package)."""
    return any(name == owner or name.startswith(owner + ".") for owner in owners)


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def roots(imports: set[str]) -> set[str]:
    return {name.split(".")[0] for name in imports}


@pytest.mark.parametrize("library", sorted(ONLY_IMPORTERS))
def test_library_has_one_owner(library: str) -> None:
    offenders = [m for m, imps in MODULES.items()
                 if library in roots(imps) and not within(m, ONLY_IMPORTERS[library])]
    assert offenders == []


def test_pure_modules_import_no_io_library() -> None:
    forbidden = {"sqlite3", "subprocess", "click", "jinja2", "rich"}
    for module, imps in MODULES.items():
        if within(module, PURE):
            allowed = PURE_MAY_USE.get(module, set())
            assert roots(imps) & (forbidden - allowed) == set(), module


@pytest.mark.parametrize("module", ["report", "rank_exit"])
def test_the_trial_side_imports_the_standard_library_only(module: str) -> None:
    imps = MODULES[module]
    assert {r for r in roots(imps) if r not in ("__future__", "cade_cli")} <= set(sys.stdlib_module_names)
    assert {i for i in imps if within(i, ("cade_cli",))} <= {"cade_cli", "cade_cli.rank_exit"}


def test_nothing_imports_the_cli() -> None:
    offenders = [m for m, imps in MODULES.items()
                 if not within(m, ("cli", "__main__")) and any(within(i, ("cade_cli.cli",)) for i in imps)]
    assert offenders == []


def test_the_cli_reaches_the_engine_through_its_public_face() -> None:
    from cade_cli import engine

    face = {"cade_cli.engine"} | {f"cade_cli.engine.{name}" for name in engine.__all__}
    for module, imps in MODULES.items():
        if within(module, ("cli",)):
            inner = [i for i in imps if within(i, ("cade_cli.engine",)) and i not in face]
            assert inner == [], module


def test_the_cli_reaches_schedulers_and_templates_through_the_engine() -> None:
    for module, imps in MODULES.items():
        if within(module, ("cli",)):
            direct = [i for i in imps if within(i, ("cade_cli.jobs", "cade_cli.backends"))]
            assert direct == [], module


def test_backends_never_import_the_ledger_or_searchers() -> None:
    for module, imps in MODULES.items():
        if within(module, ("backends",)):
            bad = [i for i in imps if within(i, ("cade_cli.store.ledger", "cade_cli.search.searchers"))]
            assert bad == [], module


def loads_by_name(path: Path) -> list[int]:
    """Lines that import a module by a computed name (importlib.import_module, __import__)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append(node.lineno)
        elif (isinstance(node, ast.ImportFrom) and node.module == "importlib"
              and any(alias.name == "import_module" for alias in node.names)):
            found.append(node.lineno)
    return found


def test_modules_are_loaded_by_name_only_in_plugins() -> None:
    # Searchers, backends, CLI command modules and the user's Trial module (det/pytorch) all
    # go through plugins.load; importlib.resources for package data is another matter.
    offenders = {module_name(p): lines for p in sorted(PACKAGE.rglob("*.py"))
                 if module_name(p) != "plugins" and (lines := loads_by_name(p))}
    assert offenders == {}
    assert loads_by_name(PACKAGE / "plugins.py") != []


def test_the_walk_sees_imports_inside_functions() -> None:
    assert "plotext" in roots(MODULES["views.plots"])
    assert "jinja2" in roots(MODULES["jobs.render"])
