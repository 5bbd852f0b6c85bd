"""Applies the numbered SQL files in sql/ once each, in order, safely from concurrent processes."""

import hashlib
import logging
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipeline.settings import REPO_ROOT

log = logging.getLogger(__name__)

MIGRATIONS_DIR = REPO_ROOT / "sql"
# Any constant works; it only has to be the same for every process that migrates.
_LOCK_ID = 0x617564696F


def ensure_database(database_url: str) -> None:
    """Creates the database named in the URL if it is missing (single-machine set-ups)."""
    params = conninfo_to_dict(database_url)
    name = params.get("dbname")
    if not name:
        return
    admin_url = make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # Two concurrent CREATE DATABASE race on the catalog's unique index; serialise them.
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("created database %s", name)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("[0-9][0-9][0-9]_*.sql"))


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies what is not applied yet; returns the names applied by this call."""
    ensure_database(database_url)
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Session-level advisory lock: a second migrator waits, then finds nothing to do.
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       name TEXT PRIMARY KEY,
                       checksum TEXT NOT NULL,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            done = dict(conn.execute("SELECT name, checksum FROM schema_migrations").fetchall())
            for path in migration_files(directory):
                text = path.read_text()
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if path.name in done:
                    if done[path.name] != checksum:
                        log.warning("migration %s changed after it was applied", path.name)
                    continue
                with conn.transaction():
                    conn.execute(text)
                    conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                        (path.name, checksum),
                    )
                log.info("applied migration %s", path.name)
                applied_now.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now
