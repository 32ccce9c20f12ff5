"""The package's shape: no import cycle among its modules, and a command line that answers `--help` without torch."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGES = ("colorgan", "hub_card")  # hub_card renders the model card from colorgan's facts


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every module of `modules` that `path` imports anywhere: at the top, inside functions, under `if`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package `level - 1` steps above this module's own
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name`, the module
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    # importing a module imports its packages first; that is not an edge worth a cycle
    return {module for module in found if module in modules and module != name and not name.startswith(module + ".")}


def import_graph() -> dict[str, set[str]]:
    paths = [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))]
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, colouring modules as it goes)."""
    state: dict[str, str] = {}  # "open" while on the search path, "done" once all below it are searched

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported) :] + [imported]
            if imported not in state and (cycle := visit(imported, [*path, imported])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "colorgan.pipeline" in graph["colorgan.cli.options"]  # imported inside load_colorizer only
    assert "colorgan.fullres" in graph["colorgan.pipeline"]  # `from . import fullres`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_among_the_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


HEAVY = ("torch", "timm", "av", "cv2", "jinja2", "onnxruntime", "gradio")


def modules_loaded_by(args: list[str]) -> set[str]:
    """The heavy modules imported by `colorgan ARGS`, run in a fresh interpreter."""
    probe = (
        "import sys\nfrom colorgan.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print({json.dumps('@@')} + repr(sorted(name for name in {HEAVY!r} if name in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(ast.literal_eval(result.stdout.rpartition("@@")[2].strip()))


def test_help_imports_no_heavy_library():
    commands = ("colorize", "colorize-video", "colorize-dataset", "eval")
    for args in (["--help"], *([command, "--help"] for command in commands)):
        assert modules_loaded_by(args) == set(), f"colorgan {' '.join(args)} imports {modules_loaded_by(args)}"
