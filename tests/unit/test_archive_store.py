"""The archive's blob store: content-addressed, compressed, written once, and every
read checked against the blob's name (an altered or missing blob is exit 6)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.archive import ArchiveError, ArchiveStore
from connector.errors import ExitCode


def _path(store: ArchiveStore, digest: str) -> Path:
    return store.root / "objects" / digest[:2] / digest[2:]


def test_a_blob_is_stored_once_compressed_and_read_back(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path / "archive")
    data = b"person_id,first_name\n" + b"P1001,Ana\n" * 1000
    digest = store.put(data)
    mtime = _path(store, digest).stat().st_mtime_ns
    assert store.put(data) == digest  # the same bytes again: not written again
    assert _path(store, digest).stat().st_mtime_ns == mtime
    assert store.size() < len(data) / 10
    assert store.get(digest) == data
    assert _path(store, digest).stat().st_mode & 0o777 == 0o600


def _flip(raw: bytes) -> bytes:
    data = bytearray(zlib.decompress(raw))
    data[0] ^= 1
    return zlib.compress(bytes(data))


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_flip, "was altered"),
        (lambda raw: raw[: len(raw) // 2], "unreadable"),
        (lambda raw: b"not zlib", "unreadable"),
        (None, "is missing"),
    ],
)
def test_a_damaged_or_missing_blob_is_an_integrity_failure(
    tmp_path: Path, damage: Callable[[bytes], bytes] | None, says: str
) -> None:
    store = ArchiveStore(tmp_path / "archive")
    digest = store.put(b"P1001,Ana\n")
    path = _path(store, digest)
    if damage is None:
        path.unlink()
    else:
        path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ArchiveError, match=says) as exc:
        store.get(digest)
    assert exc.value.exit_code == ExitCode.TAMPERED


def test_pruning_keeps_what_a_kept_run_still_needs(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path / "archive")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    shared, old_only = store.put(b"shared"), store.put(b"old only")
    for run_id, blobs, at in (
        ("old", [shared, old_only], t0),
        ("new", [shared], t0 + timedelta(days=2)),
    ):
        manifest = store.put(f'{{"accounts": {blobs!r}}}'.replace("'", '"').encode())
        store.record_run(run_id, manifest, at)
    now = t0 + timedelta(days=3)
    assert store.prune(t0 + timedelta(days=1), now) == 1
    assert [r for r, _, _ in store.runs()] == ["new"]
    assert store.pruned_at("old") == now.isoformat()
    assert store.get(shared) == b"shared"
    with pytest.raises(ArchiveError, match="is missing"):
        store.get(old_only)


def test_pruning_removes_no_blob_while_a_kept_manifest_is_altered(tmp_path: Path) -> None:
    """Evidence stays for whoever investigates: with a kept run's manifest altered, the
    old run goes but no blob is swept."""
    store = ArchiveStore(tmp_path / "archive")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    old_only = store.put(b"old only")
    store.record_run("old", store.put(f'{{"accounts": ["{old_only}"]}}'.encode()), t0)
    kept = store.put(b'{"accounts": []}')
    store.record_run("new", kept, t0 + timedelta(days=2))
    _path(store, kept).write_bytes(zlib.compress(b'{"accounts": ["x"]}'))
    assert store.prune(t0 + timedelta(days=1), t0 + timedelta(days=3)) == 1
    assert store.get(old_only) == b"old only"
