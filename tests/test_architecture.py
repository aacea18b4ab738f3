"""docs/architecture.md stays true: no import cycle in ssltk/, no module imports the package face `ssltk`,
only ssltk/distributed.py talks to torch.distributed, and no file in ssltk/ or plugins/ is over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssltk"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            out |= {id(n) for child in node.body for n in ast.walk(child)}
    return out


def imports(path: Path) -> set[str]:
    """The ssltk modules ``path`` imports anywhere (module level and in functions; not for type checkers)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ssltk":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "ssltk"}
    return out


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def test_no_module_imports_the_package_face():
    offenders = sorted(m for m, deps in GRAPH.items() if m != "ssltk" and "ssltk" in deps)
    assert not offenders, f"these import `ssltk` itself (use the module that defines the name): {offenders}"


def test_no_import_cycle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in GRAPH or w == "ssltk":  # the package face loads names lazily, on first use
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_only_the_distributed_module_talks_to_torch_distributed():
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        if path == PACKAGE / "distributed.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names = [f"{node.value.id}.{node.attr}"]
            if any(n == "torch.distributed" or n.startswith("torch.distributed.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"use ssltk.distributed instead: {sorted(set(offenders))}"


def test_no_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*PACKAGE.rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these by concept: {long}"
