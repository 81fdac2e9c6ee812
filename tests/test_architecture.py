"""Structure checks of the package: an acyclic import graph, modules of a readable size, and the
README's map of the package matching the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "activelab_lightning"
README = PACKAGE.parent / "README.md"
NAME = "activelab_lightning"

#: Modules allowed above MAX_LINES, each with the reason the README's architecture section gives.
LARGE_MODULES: dict[str, str] = {
    "activelab_lightning.callback": "one Callback class: hooks, state, the round protocol",
    "activelab_lightning.oracles.label_studio": "project setup, task upload and answer collection",
}
MAX_LINES = 500


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _import_graph() -> dict[str, set[str]]:
    """Edges ``a -> b``: module ``a`` imports ``b`` (at any depth in the file, lazily or not).

    Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for b in node.body for n in ast.walk(b))
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith(NAME) and target in modules and target != module:
                    graph[module].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path), ignoring the edges a package's ``__init__`` takes to its own
    submodules (re-exports: ``pkg -> pkg.sub`` is not a cycle with ``pkg.sub -> pkg.other``)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def edges(m: str) -> set[str]:
        return {t for t in graph[m] if not t.startswith(m + ".")}

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                return stack[stack.index(t) :] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_import_graph_is_acyclic():
    cycle = _cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_sees_relative_lazy_and_package_imports():
    graph = _import_graph()
    assert f"{NAME}.scoring.crowdlab" in graph[f"{NAME}.scoring"]  # relative, from a package __init__
    assert f"{NAME}.callback" in graph  # every module is a node
    assert any(graph[m] for m in graph if m.startswith(f"{NAME}.predictions"))


def test_scoring_does_not_import_lightning_or_the_rest_of_the_package():
    graph = _import_graph()
    for module, path in _modules().items():
        if not module.startswith(f"{NAME}.scoring"):
            continue
        outside = {t for t in graph[module] if not t.startswith(f"{NAME}.scoring")}
        assert not outside, f"{module} imports {outside}: scoring/ is pure tensor code"
        assert "lightning" not in re.findall(r"^\s*(?:from|import)\s+(\w+)", path.read_text(), re.M)


def test_no_module_is_over_the_size_limit_unless_the_readme_says_why():
    readme = README.read_text(encoding="utf-8")
    too_long = {}
    for module, path in _modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long[module] = lines
    unexplained = {m: n for m, n in too_long.items() if m not in LARGE_MODULES}
    assert not unexplained, f"modules over {MAX_LINES} lines: {unexplained}"
    for module in LARGE_MODULES:
        path = module.removeprefix(NAME + ".").replace(".", "/") + ".py"
        assert f"`{path}` (~" in readme, f"README does not say why {path} is large"


def test_readme_where_things_live_links_existing_files():
    readme = README.read_text(encoding="utf-8")
    section = readme.split("### Where things live", 1)
    assert len(section) == 2, "README has no 'Where things live' section"
    body = section[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\((activelab_lightning/[^)#]+)", body)
    assert len(links) >= 10
    missing = [link for link in links if not (PACKAGE.parent / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
    for module in _modules():
        top = module.split(".")[1] if "." in module else None
        if top and not top.startswith("_") and top not in ("datasets",):
            assert f"activelab_lightning/{top}" in body, f"'Where things live' does not mention {top}"
