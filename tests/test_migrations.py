"""`pipeline migrate` on a fresh database: the platform schema, its fixes, and concurrency safety."""

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pipeline.migrate import migrate, migration_files

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def fresh_url() -> Iterator[str]:
    name = f"pipeline_migrate_{uuid.uuid4().hex[:8]}"
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_concurrent_migrate_commands_apply_each_file_once(fresh_url: str) -> None:
    env = {"DATABASE_URL": fresh_url, "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([".venv/bin/pipeline", "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert sum("applied:" in out for out in outputs) == 1
    with psycopg.connect(fresh_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [p.name for p in migration_files()]
    assert migrate(fresh_url) == []


def test_schema_keeps_the_platform_contract_and_fixes_its_defects(fresh_url: str) -> None:
    migrate(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        labels = [r[0] for r in conn.execute("SELECT unnest(enum_range(NULL::song_status))::text")]
        assert labels == ["uploaded", "processing", "ready", "failed", "blocked"]
        columns = {
            r[0]
            for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'uploads'")
        }
        assert {"job_id", "song_id", "storage_key", "error_code", "error_message", "attempts"} <= columns
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'songs'")}
        assert "idx_songs_title_artist" in indexes  # needs pg_trgm, which the design forgot

        user = conn.execute(
            "INSERT INTO users (email, password_hash, display_name) VALUES ('a@b.c', 'x', 'A') RETURNING id"
        ).fetchone()[0]
        song_ids = [
            conn.execute("INSERT INTO songs (title, artist) VALUES (%s, 'B') RETURNING id", (t,)).fetchone()[0]
            for t in ("one", "two")
        ]
        playlist = conn.execute(
            "INSERT INTO playlists (user_id, name) VALUES (%s, 'p') RETURNING id", (user,)
        ).fetchone()[0]
        for position, song in enumerate(song_ids):
            conn.execute("INSERT INTO playlist_songs VALUES (%s, %s, %s)", (playlist, song, position))
        # Swapping two positions in one transaction: impossible with the design's unique index.
        with conn.transaction():
            conn.execute("UPDATE playlist_songs SET position = 1 - position WHERE playlist_id = %s", (playlist,))

        before = conn.execute("SELECT updated_at FROM songs WHERE id = %s", (song_ids[0],)).fetchone()[0]
        conn.execute("UPDATE songs SET genre = 'Jazz' WHERE id = %s", (song_ids[0],))
        after = conn.execute("SELECT updated_at FROM songs WHERE id = %s", (song_ids[0],)).fetchone()[0]
        assert after > before

        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO uploads (file_name, original_size, status) VALUES ('f', 1, 'bogus')")
