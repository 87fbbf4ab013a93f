"""``misync state migrate --to postgresql://…``: copy a SQLite state folder (every table
of the state store and the whole audit trail) into an empty PostgreSQL database.

Rules (docs/DECISIONS.md, "State on PostgreSQL"):

- The source is checked first: the audit trail must verify (chain and head anchor,
  with ``audit.key_file`` if set); a trail that does not is not copied, since the copy
  would carry the damage with a fresh head.
- The target must be empty (no row in any misync table): a migration never merges
  into, or overwrites, a state that is already in use.
- Everything is copied in one transaction, rows as they are (ids, timestamps, JSON,
  audit records with their hashes): a failure leaves the target as empty as it was.
- The copy is checked: same row count per table, and ``audit verify`` on the copy
  passes with the same head (seq and hash) as the source.
- The run lock of the state folder is held throughout, so no run writes meanwhile.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from connector.audit.postgres import AUDIT_TABLES, PgAuditTrail
from connector.audit.trail import AuditError, AuditTrail
from connector.errors import ExitCode, MisyncError
from connector.state.postgres import STATE_TABLES, connect, create_schema, safe_url
from connector.state.store import StateStore

#: tables with an identity column: the sequence moves past the copied ids
_IDENTITY = ("journal", "breaches", "alerts", "held_decisions")


class MigrateError(MisyncError):
    """The migration was refused or failed; nothing was left half-copied (exit 5)."""

    exit_code = ExitCode.REFUSED


@dataclass(frozen=True, slots=True)
class MigrateResult:
    rows: dict[str, int]  # table -> rows copied
    audit_records: int
    head_seq: int
    head_hash: str


def migrate(
    state_dir: Path,
    url: str,
    *,
    key: bytes | None = None,
    password: str | None = None,
    sslmode: str = "prefer",
    ca_file: str | None = None,
) -> MigrateResult:
    """Copy the SQLite state in ``state_dir`` into the empty database at ``url``."""
    db_path, audit_path = state_dir / "state.sqlite3", state_dir / "audit.sqlite3"
    if not db_path.exists():
        raise MigrateError(f"state folder {state_dir}: no state.sqlite3 to migrate")
    with AuditTrail(audit_path, key=key, read_only=True) as source_trail:
        checked = source_trail.verify()
        if not checked.ok:
            raise MigrateError(
                f"audit trail {audit_path} does not verify, not copied: "
                + "; ".join(checked.problems)
            )
        records = source_trail._records()
    StateStore(db_path).close()  # bring an older state's schema up to date, as any run does
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    where = safe_url(url)
    try:
        conn = connect(url, password=password, sslmode=sslmode, ca_file=ca_file)
    except Exception as exc:
        raise MigrateError(str(exc)) from exc
    try:
        create_schema(conn)
        trail = PgAuditTrail(conn, key, where=where)
        used = _used_tables(conn)
        if used:
            raise MigrateError(
                f"{where} is not empty ({', '.join(used)}): state migrate copies only into "
                "an empty database"
            )
        copied: dict[str, int] = {}
        with conn.transaction():
            for table in STATE_TABLES:
                copied[table] = _copy_table(source, conn, table)
            for table in _IDENTITY:
                conn.execute(
                    sql.SQL(
                        "select setval(pg_get_serial_sequence({name}, 'id'), "
                        "coalesce((select max(id) from {table}), 0) + 1, false)"
                    ).format(name=sql.Literal(table), table=sql.Identifier(table))
                )
            last = records[-1] if records else None
            head = (last.seq, last.hash, last.at) if last else (0, checked.head_hash, "")
            trail.copy_records(records, head)
        result = trail.verify()
        if not result.ok or (result.head_seq, result.head_hash) != (
            checked.head_seq,
            checked.head_hash,
        ):
            raise MigrateError(
                f"the copy's audit trail does not verify with the source's head "
                f"{checked.head_seq}:{checked.head_hash}: {'; '.join(result.problems)}"
            )
        for table, n in copied.items():
            count = sql.SQL("select count(*) from {}").format(sql.Identifier(table))
            row = conn.execute(count).fetchone()
            if row is None or int(row[0]) != n:
                raise MigrateError(f"table {table}: copied {n} rows, the copy holds {row}")
    except psycopg.Error as exc:
        raise MigrateError(f"{where}: {str(exc).strip()}") from exc
    except AuditError as exc:
        raise MigrateError(str(exc)) from exc
    finally:
        conn.close()
        source.close()
    return MigrateResult(copied, len(records), checked.head_seq, checked.head_hash)


def _used_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    used = []
    for table in STATE_TABLES + AUDIT_TABLES:
        query = sql.SQL("select exists (select 1 from {})").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        if row and row[0]:
            used.append(table)
    # a fresh store writes its schema version: that alone is not "in use"
    if used == ["meta"]:
        row = conn.execute("select count(*) from meta where key <> 'schema_version'").fetchone()
        if row and not row[0]:
            return []
    return used


def _copy_table(
    source: sqlite3.Connection, conn: psycopg.Connection[tuple[Any, ...]], table: str
) -> int:
    columns = [r[1] for r in source.execute(f"pragma table_info({table})")]
    if not columns:
        return 0  # a table this older state never had
    if table == "meta":
        conn.execute("delete from meta")  # the copy carries the source's schema version
    names = ", ".join(f'"{c}"' for c in columns)
    target = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    n = 0
    with conn.cursor() as cur, cur.copy(target) as copy:
        for row in source.execute(f'select {names} from "{table}"'):  # noqa: S608 - our names
            copy.write_row(row)
            n += 1
    return n


def migrate_command(state: Any, args: Any, key: bytes | None) -> tuple[MigrateResult, str]:
    """``misync state migrate``: the folder of ``state`` (settings) into ``args.to``, under
    the folder's run lock. The password, sslmode and CA come from the options, else from
    ``[state]``. Returns the result and the target (without password)."""
    from connector.settings import read_secret
    from connector.state.lock import state_lock

    password_file = args.password_file or state.password_file
    password = (
        read_secret(password_file, None, "state.password") if password_file is not None else None
    )
    ca_file = args.ca_file or state.ca_file
    with state_lock(state.dir):
        result = migrate(
            state.dir,
            args.to,
            key=key,
            password=password,
            sslmode=args.sslmode or state.sslmode,
            ca_file=str(ca_file) if ca_file else None,
        )
    return result, safe_url(args.to)
