"""The package layout holds: folders by idea, no import circles, small modules, every
allowed value and every artifact file name written down once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pdiff_jax"
TOP_LEVEL = {"__init__", "main", "api", "pipeline", "run", "artifacts", "errors"}
SUB_PACKAGES = {"config", "params", "runtime", "zoo", "suites", "models", "generator",
                "evaluation", "data"}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path) -> set[str]:
    """Every pdiff_jax module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:
                    out.add(full)
                elif base in MODULES:
                    out.add(base)
    out.discard(name)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*path[path.index(w):], w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_find_cycle_sees_a_circle_and_its_absence():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules_even_inside_functions():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert find_cycle(graph) is None


def test_top_level_holds_entry_points_and_sub_packages_only():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert modules == TOP_LEVEL
    assert packages == SUB_PACKAGES


@pytest.mark.parametrize("package", sorted(SUB_PACKAGES))
def test_every_sub_package_says_what_it_holds(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 15, f"pdiff_jax/{package}/__init__.py needs a docstring"


def test_no_module_over_the_size_limit():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _string_tuples(tree) -> list[tuple[str, ...]]:
    return [tuple(e.value for e in node.elts) for node in ast.walk(tree)
            if isinstance(node, ast.Tuple) and len(node.elts) > 1
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                    for e in node.elts)]


def test_allowed_values_are_written_in_choices_only():
    from pdiff_jax.config import choices

    allowed = {v for k, v in vars(choices).items()
               if k.isupper() and isinstance(v, tuple) and all(isinstance(e, str) for e in v)}
    copies = [(name, t) for name, path in MODULES.items() if name != "pdiff_jax.config.choices"
              for t in _string_tuples(ast.parse(path.read_text())) if t in allowed]
    assert not copies, f"allowed values restated outside config/choices.py: {copies}"


def test_artifact_file_names_are_spelled_in_artifacts_only():
    from pdiff_jax import artifacts

    names = {v for k, v in vars(artifacts).items()
             if k.isupper() and isinstance(v, str) and "." in v}
    spelled = []
    for name, path in MODULES.items():
        if name == "pdiff_jax.artifacts":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                spelled.append((name, node.value))
    assert not spelled, f"artifact file names outside artifacts.py: {spelled}"


def test_nothing_reaches_into_a_runs_private_state():
    root = PACKAGE.parent
    offenders = [str(p.relative_to(root)) for d in ("pdiff_jax", "benchmarks", "launch", "tests")
                 for p in (root / d).rglob("*.py")
                 if p.name != "test_layout.py" and "._inputs" in p.read_text()]
    assert not offenders
