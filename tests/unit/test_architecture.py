"""The project's shape, checked on its import graph (grimp, the engine of import-linter): no
module reaches itself through its imports, the layers only import downwards, and the core
(the hospital, the tick engine, the policies and the rules) knows nothing of the database,
the broker, the web or the command line. Every import counts, also those inside functions."""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("cli", "dashboard", "scheduler", "rules")
# Top to bottom; a module belongs to the first layer whose package holds it, the core to none
# of these. The migrations are the database's own.
LAYERS = (
    ("cli",),
    ("dashboard",),
    ("scheduler.distributed",),
    ("scheduler.db", "scheduler.migrations"),
)
CORE = len(LAYERS)
# What the core may not import, itself or through another module.
NOT_FOR_THE_CORE = (
    "sqlalchemy",
    "alembic",
    "psycopg2",
    "kafka",
    "typer",
    "click",
    "rich",
    "fastapi",
    "starlette",
    "uvicorn",
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True)


def layer(module: str) -> int:
    for n, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            return n
    return CORE


def ours(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's, iteratively)."""
    modules = ours(graph)
    imports = {m: sorted(n for n in graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, next_child = work.pop()
            if next_child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = [c for c in imports.get(node, []) if c in imports]
            if next_child < len(children):
                work.append((node, next_child + 1))
                child = children[next_child]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_no_module_imports_itself_through_others(graph):
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    looped = grimp.ImportGraph()
    for module in ("scheduler", "scheduler.a", "scheduler.b", "scheduler.c"):
        looped.add_module(module)
    looped.add_import(importer="scheduler.a", imported="scheduler.b")
    looped.add_import(importer="scheduler.b", imported="scheduler.c")
    looped.add_import(importer="scheduler.c", imported="scheduler.a")
    assert cycles(looped) == [["scheduler.a", "scheduler.b", "scheduler.c"]]


def test_layers_only_import_downwards(graph):
    upwards = [
        f"{module} -> {imported}"
        for module in ours(graph)
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.split(".")[0] in PACKAGES and layer(imported) < layer(module)
    ]
    assert upwards == []


def test_the_core_knows_no_database_broker_web_or_command_line(graph):
    core = [m for m in ours(graph) if layer(m) == CORE]
    assert "scheduler.engine" in core and "rules.tie_break" in core
    reached = [
        f"{module} -> {imported}"
        for module in core
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.split(".")[0] in NOT_FOR_THE_CORE or layer(imported) < CORE
    ]
    assert reached == []
