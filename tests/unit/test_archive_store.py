"""The archive's blob store: content-addressed, compressed, written once, and every
read checked against the blob's name (an altered or missing blob is exit 6)."""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.archive import ArchiveError, ArchiveStore, BucketCache, inputs
from connector.archive.store import sha256
from connector.errors import ExitCode
from connector.model.accounts import Account


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


def _accounts(n: int, *, enabled: bool = True) -> list[Account]:
    return [
        Account(
            f"uid=u{i},ou=people,dc=x",
            f"P{i}",
            f"u{i}",
            enabled,
            {"cn": (f"Given{i} Family{i}",), "mail": (f"u{i}@x.org",)},
            frozenset({"cn=mis-case-manager,ou=groups,dc=x"}),
        )
        for i in range(n)
    ]


def _buckets(accounts: list[Account]) -> list[list[Account]]:
    out: list[list[Account]] = [[] for _ in range(inputs.BUCKETS)]
    for a in accounts:
        out[inputs.bucket_of(a.account_id)].append(a)
    return out


def _other_object(store: ArchiveStore, cache: BucketCache, i: int) -> None:
    other = next(c for j, c in cache._buckets.items() if j != i)
    cache._buckets[i] = dataclasses.replace(cache._buckets[i], digest=other.digest)


def _object_gone(store: ArchiveStore, cache: BucketCache, i: int) -> None:
    _path(store, cache._buckets[i].digest).unlink()


def _object_rewritten(store: ArchiveStore, cache: BucketCache, i: int) -> None:
    path = _path(store, cache._buckets[i].digest)
    raw, st = path.read_bytes(), path.stat()
    path.unlink()
    path.write_bytes(raw)  # the same bytes, another file: not the one the digest was cached for
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _account_changed(store: ArchiveStore, cache: BucketCache, i: int) -> None:
    pass  # the bucket's account is disabled below


@pytest.mark.parametrize(
    ("doubt", "change"),
    [
        (None, False),
        (_account_changed, True),
        (_other_object, False),
        (_object_gone, False),
        (_object_rewritten, False),
    ],
)
def test_a_cached_bucket_digest_is_reused_only_when_nothing_is_in_doubt(
    tmp_path: Path,
    doubt: Callable[[ArchiveStore, BucketCache, int], None] | None,
    change: bool,
) -> None:
    """``BucketCache``: the digests are always those of the buckets as given (what an
    uncached run would write); a bucket is serialised again only when its accounts
    changed or its cached digest is in doubt, and then it alone."""
    store = ArchiveStore(tmp_path / "archive")
    cache = BucketCache()
    accounts = _accounts(300)
    first = cache.digests(store, _buckets(accounts))
    assert cache.serialised == inputs.BUCKETS
    assert first == [sha256(inputs.bucket_bytes(b)) for b in _buckets(accounts)]
    i = inputs.bucket_of(accounts[7].account_id)
    if doubt is not None:
        doubt(store, cache, i)
    if change:
        accounts[7] = dataclasses.replace(accounts[7], enabled=False)
    buckets = _buckets(accounts)
    again = cache.digests(store, buckets)
    assert again == [sha256(inputs.bucket_bytes(b)) for b in buckets]
    assert cache.serialised == (0 if doubt is None else 1)
    assert (again != first) is change
    for d, b in zip(again, buckets, strict=True):  # every named object is there and right
        assert [inputs.account_from_dict(x) for x in json.loads(store.get(d))] == sorted(
            b, key=lambda a: a.account_id.lower()
        )
    # another archive folder: nothing cached for it
    cache.digests(ArchiveStore(tmp_path / "other"), buckets)
    assert cache.serialised == inputs.BUCKETS
