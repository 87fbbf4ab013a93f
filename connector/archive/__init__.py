"""The archive of each run's inputs (docs/DECISIONS.md, "Archive"): the exact feed bytes,
configuration, planner state and directory accounts a run planned from, stored
content-addressed (sha256) and compressed (zlib) in ``state.dir/archive/``, so that
``misync audit replay RUN_ID`` can rebuild the run's plan from the archive alone.

- ``store``: the blob store (``ArchiveStore``) and its errors;
- ``capture``: what a run notes while it plans (``recording``, ``note``);
- ``inputs``: the run's manifest (what is archived, and writing it);
- ``replay``: rebuilding a plan from a manifest.
"""

from connector.archive.capture import Recorder, note, recording
from connector.archive.inputs import BucketCache
from connector.archive.store import (
    ArchiveError,
    ArchiveStore,
    ArchiveWriteError,
    prune_archive,
)

__all__ = [
    "ArchiveError",
    "ArchiveStore",
    "ArchiveWriteError",
    "BucketCache",
    "Recorder",
    "note",
    "prune_archive",
    "recording",
]
