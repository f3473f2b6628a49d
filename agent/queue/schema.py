"""The queue database's schema, its creation and its epoch.

One SQLite file holds every stream, cursor, gap, counter and piece of pipeline state,
so that one transaction can cover all of them (promise 4). The schema is documented in
docs/architecture.md; `SCHEMA_VERSION` guards against opening a file written by a newer
release.
"""

from __future__ import annotations

import secrets
import sqlite3
import time

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    next_seq   INTEGER NOT NULL DEFAULT 1,
    bytes      INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    stream_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    event_time  REAL NOT NULL,
    ingest_time REAL NOT NULL,
    key         TEXT,
    topic       TEXT,
    payload     BLOB NOT NULL,
    headers     TEXT,
    PRIMARY KEY (stream_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    consumer  TEXT NOT NULL,
    stream_id INTEGER NOT NULL,
    position  INTEGER NOT NULL DEFAULT 0,
    active    INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL,
    PRIMARY KEY (consumer, stream_id)
);
CREATE TABLE IF NOT EXISTS gaps (
    stream_id   INTEGER NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (stream_id, first_seq)
);
CREATE TABLE IF NOT EXISTS counters (
    stream TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, name)
);
CREATE TABLE IF NOT EXISTS state (
    owner TEXT NOT NULL,
    name  TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS mqtt_inflight (
    source     TEXT NOT NULL,
    mid        INTEGER NOT NULL,
    digest     BLOB NOT NULL,
    written_at REAL NOT NULL,
    PRIMARY KEY (source, mid)
) WITHOUT ROWID;
"""


class SchemaError(RuntimeError):
    """The database was written by an incompatible release or is not a queue."""


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """Open the queue database in WAL mode with the durability level asked for.

    `synchronous=FULL` fsyncs the WAL at each commit: with group commit that is a few
    fsyncs a second, and an acknowledged event survives a power cut. `NORMAL` only
    survives a crash of the process.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> str:
    """Create the tables on first use and return the queue epoch.

    The epoch is a random id made once, with the database: a wiped SD card gives a
    new epoch, so the hub never mistakes new events for duplicates of old ones.
    """
    conn.execute("BEGIN IMMEDIATE")
    for statement in _DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    epoch = _meta(conn, "epoch")
    if epoch is None:
        epoch = secrets.token_hex(8)
        _set_meta(conn, "epoch", epoch)
        _set_meta(conn, "schema_version", str(SCHEMA_VERSION))
        _set_meta(conn, "created_at", repr(time.time()))
    conn.execute("COMMIT")
    _check_version(conn)
    return epoch


def _check_version(conn: sqlite3.Connection) -> None:
    version = int(_meta(conn, "schema_version") or "0")
    if version > SCHEMA_VERSION:
        msg = (
            f"queue database has schema version {version}, this release reads up to "
            f"{SCHEMA_VERSION}: upgrade edgestream or point data_dir elsewhere"
        )
        raise SchemaError(msg)


def _meta(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, value))
