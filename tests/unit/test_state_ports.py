"""The SQLite store implements every state Protocol (``connector.state.ports``), at run
time here and in mypy through the typed assignments at the end of that module, so a
second backend is held to the same surface."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.state import StateStore, ports


@pytest.mark.parametrize("port", [getattr(ports, name) for name in ports.__all__])
def test_the_sqlite_store_implements(port: type, tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        assert isinstance(store, port)
