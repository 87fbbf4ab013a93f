"""The data's way through the house reads one way (docs/DECISIONS.md, "Layout").

Read from the source with ``ast`` (every ``import`` and ``from ... import``, also those
inside functions and under ``TYPE_CHECKING``): a module may import only from its own
layer or a lower one, the pure core imports no I/O adapter, each third-party client
library lives in its one adapter, and no two packages import each other, however
indirectly.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.configs import ROOT

PACKAGE = ROOT / "connector"

#: The layers, lowest first. A unit (a package of connector/, or a top-level module) may
#: import units of its own layer or below, never above:
#:
#: 0. foundations: the version, the error root, how instants are written;
#: 1. the domain model (frozen dataclasses);
#: 2. the pure rules: Policy 1021, the account mapping (types and templates), and the
#:    settings (pydantic at the edge, read by everything above);
#: 3. reconcile: desired state, diff, guards, the plan and its serialisation;
#: 4. records: what a run writes to the audit trail, and how it is read back (pure);
#: 5. adapters, one concern each: feeds (CSV), targets (LDAP, SCIM), state (SQLite,
#:    PostgreSQL), audit (the hash-chained trail), and connector.testing's in-memory
#:    target;
#: 6. the executor (journal, then directory) and the alerts (a port, sinks behind it,
#:    the manager) beside it;
#: 7. app: a Runtime wired from the settings;
#: 8. runs: one Run around a PlanSource;
#: 9. what reads runs: the report, the CLI's progress, the health status;
#: 10. the daemon (the only APScheduler user), the CLI, the developer tools.
LAYERS: dict[str, int] = {
    "connector": 0,
    "errors": 0,
    "timefmt": 0,
    "model": 1,
    "policy": 2,
    "mapping": 2,
    "settings": 2,
    "reconcile": 3,
    "records": 4,
    "feeds": 5,
    "targets": 5,
    "state": 5,
    "audit": 5,
    "archive": 5,  # the archive of each run's inputs (connector/archive/)
    "testing": 5,
    "executor": 6,  # the executor (connector/executor/)
    "alerts": 6,
    "app": 7,
    "logs": 7,
    "runs": 8,
    "report": 9,
    "progress": 9,
    "health": 9,
    "daemon": 10,
    "cli": 10,
    "devtools": 10,
    "__main__": 10,
}

#: Modules that sit in a higher layer than their package: ``state migrate`` copies the
#: state store *and* the audit trail to PostgreSQL, so it stands above both adapters
#: (the audit trail's PostgreSQL backend shares the state's connection helpers).
MODULE_LAYERS: dict[str, tuple[str, int]] = {
    "connector.state.migrate": ("state.migrate", 7),
}

PURE_CORE = ("model", "policy", "reconcile")
#: the only parts of connector.mapping the pure core may use (the loader reads files)
CORE_MAY_USE = ("connector.mapping.types", "connector.mapping.templates")

#: third-party libraries that belong to one adapter each
ONE_HOME = {
    "ldap3": "connector.targets.ldap",
    "scim2_client": "connector.targets.scim",
    "apscheduler": "connector.daemon",
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


@cache
def _imports(path: Path) -> tuple[str, ...]:
    """Absolute names of what the module at ``path`` imports; ``from x import y`` gives
    both x and x.y (y may be a module: ``from connector.state import migrate``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names)
    return tuple(names)


def _unit(module: str) -> tuple[str, int] | None:
    """The unit and layer of a module of ours (None for anything else)."""
    if module != "connector" and not module.startswith("connector."):
        return None
    for prefix, unit in MODULE_LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return unit
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "connector"
    if not ((PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()):
        name = "connector"  # a name in connector/__init__.py (``from connector import x``)
    if name not in LAYERS:
        raise AssertionError(f"{module}: connector.{name} is in no layer of LAYERS")
    return name, LAYERS[name]


def _edges() -> Iterator[tuple[str, str, str, int, str, int]]:
    """(module, imported, unit, layer, imported unit, its layer) for imports of ours
    that cross units."""
    for module, path in _modules():
        here = _unit(module)
        assert here is not None
        for imported in _imports(path):
            there = _unit(imported)
            if there is None or there[0] == here[0]:
                continue
            yield module, imported, here[0], here[1], there[0], there[1]


def test_every_package_is_in_a_layer() -> None:
    units = {_unit(m) for m, _ in _modules()}
    assert None not in units


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = sorted(
        f"{module} ({unit}, layer {layer}) imports {imported} ({other}, layer {other_layer})"
        for module, imported, unit, layer, other, other_layer in _edges()
        if other_layer > layer
    )
    assert upward == []


def test_the_pure_core_imports_no_adapter() -> None:
    bad = sorted(
        f"{module} imports {imported}"
        for module, imported, unit, _, other, _ in _edges()
        if unit in PURE_CORE
        and other not in (*PURE_CORE, "connector", "errors", "timefmt", "mapping")
    )
    bad += sorted(
        f"{module} imports {imported} (only {', '.join(CORE_MAY_USE)} of connector.mapping)"
        for module, imported, unit, _, other, _ in _edges()
        if unit in PURE_CORE and other == "mapping" and not imported.startswith(CORE_MAY_USE)
    )
    assert bad == []


def test_no_import_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for _, _, unit, _, other, _ in _edges():
        graph.setdefault(unit, set()).add(other)

    def reaches(start: str, goal: str) -> list[str] | None:
        stack, seen = [(start, [start])], {start}
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == goal:
                    return [*path, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = sorted(" -> ".join(c) for u in graph if (c := reaches(u, u)) is not None)
    assert cycles == []


@pytest.mark.parametrize(("library", "home"), sorted(ONE_HOME.items()))
def test_a_client_library_is_imported_only_by_its_adapter(library: str, home: str) -> None:
    outside = sorted(
        module
        for module, path in _modules()
        if not (module == home or module.startswith(home + "."))
        and any(i == library or i.startswith(library + ".") for i in _imports(path))
    )
    assert outside == []
