"""Content-addressed, compressed, deduplicated blobs in ``state.dir/archive/``.

``objects/ab/cdef...`` holds the zlib-compressed bytes whose sha256 is ``abcdef...``; a
blob already there is not written again (an unchanged feed or account bucket costs
nothing in the next run). ``runs/<run_id>.json`` names a run's manifest and when it was
archived; ``plans/<id>.json`` the manifest of the inputs a saved plan (``misync plan
-o``) was made from, which no run carried out yet (not in the audit trail, so never
a run to replay or explain); ``pruned/<run_id>.json`` says when retention removed a
run's inputs. Every
read checks the bytes against their name: a missing or altered blob is an
``ArchiveError`` (exit 6, as a tampered trail), never silently something else.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from connector.errors import ExitCode, MisyncError


class ArchiveError(MisyncError):
    """An archived input is missing or does not match its digest (exit 6)."""

    exit_code = ExitCode.TAMPERED


class ArchiveWriteError(MisyncError):
    """A run's inputs could not be written to the archive (exit 3): the run stops
    before its plan is recorded or anything is changed."""

    exit_code = ExitCode.UNAVAILABLE
    temporary = True


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArchiveStore:
    """The archive folder. Writes are atomic (a temporary file renamed into place)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _object(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self._object(digest).is_file()

    def stamp(self, digest: str) -> tuple[int, int, int] | None:
        """The object file of ``digest``: (inode, size, mtime_ns); None when missing. A
        cached digest is reused only while its file is the one it was written to."""
        try:
            st = self._object(digest).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def put(self, data: bytes) -> str:
        """Store ``data``; its sha256 (hex). Written only if not there yet."""
        digest = sha256(data)
        path = self._object(digest)
        if not path.is_file():
            _write_atomic(path, zlib.compress(data, 6))
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes named ``digest``; ``ArchiveError`` if missing or altered."""
        path = self._object(digest)
        try:
            data = zlib.decompress(path.read_bytes())
        except FileNotFoundError:
            raise ArchiveError(f"{path}: archived input {digest} is missing") from None
        except (OSError, zlib.error) as exc:
            raise ArchiveError(f"{path}: archived input {digest} is unreadable: {exc}") from None
        if sha256(data) != digest:
            raise ArchiveError(f"{path}: archived input {digest} was altered (sha256 differs)")
        return data

    # -- runs ------------------------------------------------------------------------

    def record_run(self, run_id: str, manifest: str, at: datetime) -> None:
        body = json.dumps({"manifest": manifest, "at": at.isoformat()}).encode()
        _write_atomic(self.root / "runs" / f"{run_id}.json", body)

    def record_plan(self, plan_id: str, manifest: str, at: datetime) -> None:
        """The inputs of a saved plan (``misync plan -o``): kept as a run's are, until
        ``keep_days`` after ``at``; a run that carries the plan out names them too."""
        body = json.dumps({"manifest": manifest, "at": at.isoformat()}).encode()
        _write_atomic(self.root / "plans" / f"{plan_id}.json", body)

    def _entries(self, folder: str) -> Iterator[tuple[str, str, datetime]]:
        path = self.root / folder
        if not path.is_dir():
            return
        for entry in sorted(path.glob("*.json")):
            d = json.loads(entry.read_text())
            yield entry.stem, str(d["manifest"]), datetime.fromisoformat(d["at"])

    def run_manifest(self, run_id: str) -> str | None:
        """The manifest digest the archive holds for ``run_id`` (None: none)."""
        try:
            return str(json.loads((self.root / "runs" / f"{run_id}.json").read_text())["manifest"])
        except FileNotFoundError:
            return None

    def pruned_at(self, run_id: str) -> str | None:
        try:
            return str(json.loads((self.root / "pruned" / f"{run_id}.json").read_text())["at"])
        except FileNotFoundError:
            return None

    def runs(self) -> Iterator[tuple[str, str, datetime]]:
        """(run id, manifest digest, archived at) of every run still archived."""
        return self._entries("runs")

    def plans(self) -> Iterator[tuple[str, str, datetime]]:
        """(plan id, manifest digest, archived at) of every saved plan's inputs."""
        return self._entries("plans")

    def size(self) -> int:
        """Bytes on disk of every blob."""
        return sum(p.stat().st_size for p in (self.root / "objects").rglob("*") if p.is_file())

    def prune(self, before: datetime, now: datetime) -> int:
        """Remove the runs archived before ``before`` (each noted in ``pruned/``), the
        saved plans' inputs archived before it, and the blobs no remaining run or saved
        plan refers to; the number of runs removed."""
        removed = 0
        dropped = False  # any entry, a run's or a saved plan's
        keep: set[str] | None = set()
        entries = [("runs", *e) for e in self.runs()] + [("plans", *e) for e in self.plans()]
        for folder, run_id, manifest, at in entries:
            if at < before:
                if folder == "runs":  # a saved plan is no run: nothing to say of it later
                    body = json.dumps({"at": now.isoformat(), "archived_at": at.isoformat()})
                    _write_atomic(self.root / "pruned" / f"{run_id}.json", body.encode())
                    removed += 1
                (self.root / folder / f"{run_id}.json").unlink()
                dropped = True
            elif keep is not None:
                refs = _referenced(self, manifest)
                # a kept run's manifest that is altered or missing: no blob is removed,
                # so that what it named stays for whoever investigates (audit replay)
                keep = None if refs is None else keep | refs | {manifest}
        if dropped and keep is not None:
            for path in (self.root / "objects").rglob("*"):
                if path.is_file() and path.parent.name + path.name not in keep:
                    path.unlink()
        return removed


def _referenced(store: ArchiveStore, manifest: str) -> set[str] | None:
    """The blobs a manifest names; None when it is altered, missing or not JSON."""
    try:
        m = json.loads(store.get(manifest))
    except (ArchiveError, ValueError):
        return None
    refs = {f["blob"] for f in m.get("feeds", {}).values() if f.get("blob")}
    refs.update(m.get("accounts", []))
    refs.update(v for k, v in m.get("blobs", {}).items() if v)
    planned = (m.get("planned_from") or {}).get("manifest")
    if planned:  # a reviewed plan's run keeps the inputs the plan was made from
        refs.add(planned)
        refs.update(_referenced(store, planned) or ())
    return refs


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place; the file
    ``0600`` and new folders ``0700``, as the rest of the state folder (it holds
    personal data: feed rows, account attributes)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def prune_archive(state_dir: Path, keep_days: int, now: datetime) -> int:
    """Retention (``archive.keep_days``): remove the inputs of runs archived more than
    ``keep_days`` before ``now``, under the state folder's lock (a run writing its
    blobs meanwhile would otherwise lose them); the number of runs pruned. Raises
    ``StateBusyError`` while a run holds the lock (the caller tries again next time)."""
    from connector.state import state_lock

    with state_lock(state_dir):
        return ArchiveStore(state_dir / "archive").prune(now - timedelta(days=keep_days), now)
