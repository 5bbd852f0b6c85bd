"""Every SQL statement the pipeline runs. Each function is one transaction that is safe to repeat."""

import os
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

from pipeline.errors import Outcome, Reason
from pipeline.settings import Settings


def _queue_invalidation(conn: psycopg.Connection[Any], song_ids: list[str]) -> None:
    """Records, inside the caller's transaction, that song:<id> must leave the cache (see cache.py)."""
    conn.execute(
        """INSERT INTO cache_invalidations (song_id) SELECT unnest(%s::uuid[])
           ON CONFLICT (song_id) DO UPDATE SET queued_at = clock_timestamp()""",
        (song_ids,),
    )


class ClaimedUpload(BaseModel):
    upload_id: str
    song_id: str
    storage_key: str
    file_name: str
    attempts: int
    kind: str


class SongFields(BaseModel):
    album: str | None
    genre: str | None
    cover_image_key: str | None


@cache
def _pool_for(url: str, pid: int) -> ConnectionPool:
    # check= revalidates a pooled connection before use, so a restarted PostgreSQL costs a
    # reconnect instead of a failed task.
    return ConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=True,
        check=ConnectionPool.check_connection,
        kwargs={"connect_timeout": 5},
    )


def pool(settings: Settings) -> ConnectionPool:
    # Pools hold sockets, which must not be shared across a fork: one per process.
    return _pool_for(settings.database_url, os.getpid())


def claim_upload(settings: Settings, upload_id: str, job_id: str, lease_seconds: float) -> ClaimedUpload | None:
    """pending -> processing, at most once per upload. A redelivered claim of the same job gets the
    same answer again; any other job gets None."""
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """UPDATE uploads
                  SET status = 'processing', job_id = %(job)s, attempts = attempts + 1,
                      claimed_at = now(), lease_expires_at = now() + make_interval(secs => %(lease)s),
                      error_code = NULL, error_message = NULL, finished_at = NULL
                WHERE id = %(id)s AND status = 'pending'
            RETURNING id::text AS upload_id, song_id::text, storage_key, file_name, attempts, kind""",
            {"id": upload_id, "job": job_id, "lease": lease_seconds},
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(
                """SELECT id::text AS upload_id, song_id::text, storage_key, file_name, attempts, kind
                     FROM uploads WHERE id = %s AND status = 'processing' AND job_id = %s""",
                (upload_id, job_id),
            )
            row = cur.fetchone()
            return None if row is None else ClaimedUpload(**row)
        if row["song_id"] is None or row["storage_key"] is None:
            cur.execute(
                """UPDATE uploads SET status = 'failed', error_code = %s, error_message = %s,
                          finished_at = now(), lease_expires_at = NULL WHERE id = %s""",
                (Reason.INVALID_UPLOAD, "the upload row has no song_id or storage_key", upload_id),
            )
            return None
        cur.execute(
            "UPDATE songs SET status = 'processing' WHERE id = %s AND status IN ('uploaded', 'failed')",
            (row["song_id"],),
        )
        if cur.rowcount == 1:
            _queue_invalidation(conn, [row["song_id"]])
        return ClaimedUpload(**row)


def renew_lease(settings: Settings, upload_id: str, job_id: str, lease_seconds: float) -> bool:
    """True while this job still owns the upload (it was not finished or handed to another job)."""
    with pool(settings).connection() as conn:
        cur = conn.execute(
            """UPDATE uploads SET lease_expires_at = now() + make_interval(secs => %s)
                WHERE id = %s AND status = 'processing' AND job_id = %s""",
            (lease_seconds, upload_id, job_id),
        )
        return cur.rowcount == 1


def song_fields(settings: Settings, song_id: str) -> SongFields:
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT album, genre, cover_image_key FROM songs WHERE id = %s", (song_id,))
        row = cur.fetchone()
        return SongFields(**(row or {"album": None, "genre": None, "cover_image_key": None}))


class Publication(BaseModel):
    """What publishing writes to a song. `storage_keys` None keeps the current renditions (re-analysis)."""

    song_id: str
    storage_keys: dict[str, str] | None
    metadata: dict[str, Any]
    duration_seconds: int
    album: str | None = None
    genre: str | None = None
    cover_image_key: str | None = None
    rendition_version: int | None = None
    analysis_version: int | None = None


def publish(settings: Settings, *, upload_id: str, job_id: str, song: Publication, retire_after_seconds: float) -> bool:
    """Makes the song playable, swapping its renditions in one transaction. Replaced rendition objects
    are retired (deleted after `retire_after_seconds`, see delete_retired_objects). True when this job
    has published (now, or in an earlier run of this step); False when another job owns the upload."""
    with pool(settings).connection() as conn, conn.transaction():
        row = conn.execute(
            "SELECT status FROM uploads WHERE id = %s AND job_id = %s FOR UPDATE", (upload_id, job_id)
        ).fetchone()
        if row is None or row[0] not in ("processing", "done"):
            return False
        if row[0] == "done":
            return True
        conn.execute(
            "UPDATE uploads SET status = 'done', finished_at = now(), lease_expires_at = NULL WHERE id = %s",
            (upload_id,),
        )
        current = conn.execute("SELECT storage_keys FROM songs WHERE id = %s FOR UPDATE", (song.song_id,)).fetchone()
        if song.storage_keys is not None and current and current[0]:
            replaced = sorted(set(current[0].values()) - set(song.storage_keys.values()))
            conn.execute(
                """INSERT INTO retired_objects (key, song_id, delete_after)
                   SELECT unnest(%s::text[]), %s, now() + make_interval(secs => %s)
                   ON CONFLICT (key) DO NOTHING""",
                (replaced, song.song_id, retire_after_seconds),
            )
        conn.execute(
            """UPDATE songs
                  SET storage_keys = COALESCE(%(keys)s, storage_keys),
                      metadata = metadata || %(metadata)s,
                      duration_seconds = %(duration)s,
                      album = COALESCE(album, %(album)s),
                      genre = COALESCE(genre, %(genre)s),
                      cover_image_key = COALESCE(cover_image_key, %(cover)s),
                      rendition_version = COALESCE(%(rendition_version)s, rendition_version),
                      analysis_version = COALESCE(%(analysis_version)s, analysis_version),
                      status = 'ready'
                WHERE id = %(song_id)s""",
            {
                **song.model_dump(),
                "keys": Jsonb(song.storage_keys) if song.storage_keys is not None else None,
                "metadata": Jsonb(song.metadata),
                "duration": song.duration_seconds,
                "cover": song.cover_image_key,
            },
        )
        _queue_invalidation(conn, [song.song_id])
        return True


def finish_with_error(
    settings: Settings, *, upload_id: str, job_id: str, outcome: Outcome, reason: Reason, message: str
) -> str | None:
    """Records why the job ended without a song; returns the song id, or None when this job had
    already lost the upload."""
    with pool(settings).connection() as conn, conn.transaction():
        row = conn.execute(
            """UPDATE uploads SET status = %s, error_code = %s, error_message = %s,
                      finished_at = now(), lease_expires_at = NULL
                WHERE id = %s AND status = 'processing' AND job_id = %s
            RETURNING song_id::text""",
            (outcome.value, reason.value, message[:2000], upload_id, job_id),
        ).fetchone()
        if row is None:
            return None
        # A song that is already playable (a reprocess that failed) keeps its status.
        changed = conn.execute(
            "UPDATE songs SET status = %s WHERE id = %s AND status IN ('uploaded', 'processing')",
            (outcome.value, row[0]),
        ).rowcount
        if changed:
            _queue_invalidation(conn, [str(row[0])])
        return str(row[0])


def take_dispatchable(
    settings: Settings, *, limit: int, redispatch_after: float, redispatch_kinds: list[str]
) -> list[tuple[str, str]]:
    """(upload id, kind) of pending uploads never sent, and of those sent so long ago that the message
    may be lost; the latter only for kinds whose queue the caller saw empty. New uploads come first.

    SKIP LOCKED lets several schedulers sweep at once without sending an upload twice.
    """
    with pool(settings).connection() as conn:
        rows = conn.execute(
            """UPDATE uploads u SET dispatched_at = now()
                 FROM (SELECT id FROM uploads
                        WHERE status = 'pending'
                          AND (dispatched_at IS NULL
                               OR (dispatched_at < now() - make_interval(secs => %s) AND kind = ANY(%s)))
                        ORDER BY kind = 'upload' DESC, created_at
                        LIMIT %s
                        FOR UPDATE SKIP LOCKED) due
                WHERE u.id = due.id
            RETURNING u.id::text, u.kind""",
            (redispatch_after, redispatch_kinds, limit),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]


class ReapedUpload(BaseModel):
    upload_id: str
    song_id: str
    status: str  # "pending" (requeued) or "failed"


def reap_expired_leases(settings: Settings, *, max_attempts: int) -> list[ReapedUpload]:
    """Uploads stuck in `processing` past their lease: back to `pending` (the insert/update trigger
    wakes the dispatcher), or `failed` once they have used up their attempts."""
    with pool(settings).connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """UPDATE uploads
                  SET status = CASE WHEN attempts < %(max)s THEN 'pending' ELSE 'failed' END,
                      error_code = CASE WHEN attempts < %(max)s THEN NULL ELSE %(code)s END,
                      error_message = CASE WHEN attempts < %(max)s THEN NULL
                                           ELSE 'the worker stopped responding on every attempt' END,
                      finished_at = CASE WHEN attempts < %(max)s THEN NULL ELSE now() END,
                      job_id = NULL, lease_expires_at = NULL, dispatched_at = NULL
                WHERE status = 'processing' AND lease_expires_at < now()
            RETURNING id::text AS upload_id, song_id::text, status""",
            {"max": max_attempts, "code": Reason.TOO_MANY_ATTEMPTS.value},
        )
        reaped = [ReapedUpload(**row) for row in cur.fetchall()]
        failed = [r.song_id for r in reaped if r.status == "failed"]
        if failed:
            cur.execute(
                """UPDATE songs SET status = 'failed'
                    WHERE id = ANY(%s::uuid[]) AND status IN ('uploaded', 'processing')""",
                (failed,),
            )
            _queue_invalidation(conn, failed)
        return reaped


def upload_report(settings: Settings, upload_ids: list[str]) -> list[dict[str, Any]]:
    """Uploads with their songs, for people: the demo's table and `pipeline show`."""
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT u.id::text AS upload_id, u.file_name, u.status AS upload_status, u.error_code,
                      u.error_message, u.job_id, u.attempts, s.id::text AS song_id, s.title,
                      s.status::text AS song_status,
                      s.duration_seconds, s.album, s.genre, s.cover_image_key, s.metadata, s.storage_keys
                 FROM uploads u LEFT JOIN songs s ON s.id = u.song_id
                WHERE u.id = ANY(%s::uuid[]) ORDER BY u.created_at""",
            (upload_ids,),
        )
        return cur.fetchall()


def unfinished_count(settings: Settings, upload_ids: list[str]) -> int:
    with pool(settings).connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM uploads WHERE id = ANY(%s::uuid[]) AND status IN ('pending', 'processing')",
            (upload_ids,),
        ).fetchone()
        return int(row[0]) if row else 0


def queued_invalidations(settings: Settings, song_ids: list[str] | None, limit: int = 1000) -> list[tuple[str, Any]]:
    """(song id, queued_at) of pending cache invalidations: the given songs, or the oldest ones."""
    with pool(settings).connection() as conn:
        if song_ids is None:
            rows = conn.execute(
                "SELECT song_id::text, queued_at FROM cache_invalidations ORDER BY queued_at LIMIT %s", (limit,)
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT song_id::text, queued_at FROM cache_invalidations WHERE song_id = ANY(%s::uuid[])",
                (song_ids,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]


def clear_invalidations(settings: Settings, done: list[tuple[str, Any]]) -> None:
    """Forgets invalidations that were carried out, unless the song changed again meanwhile."""
    with pool(settings).connection() as conn, conn.transaction():
        for song_id, queued_at in done:
            conn.execute("DELETE FROM cache_invalidations WHERE song_id = %s AND queued_at <= %s", (song_id, queued_at))


class Selection(BaseModel):
    """Which songs a reprocess run covers. Empty filters select every song."""

    statuses: list[str] = ["ready"]
    created_from: str | None = None  # ISO timestamps
    created_to: str | None = None
    uploader_id: str | None = None
    song_ids: list[str] | None = None
    # Skip songs already made by these versions (None: the field does not restrict).
    current_rendition_version: int | None = None
    current_analysis_version: int | None = None


def _selection_filter(selection: Selection) -> tuple[sql.Composable, dict[str, Any]]:
    clauses: list[sql.Composable] = [sql.SQL("s.status::text = ANY(%(statuses)s)")]
    if selection.created_from:
        clauses.append(sql.SQL("s.created_at >= %(created_from)s"))
    if selection.created_to:
        clauses.append(sql.SQL("s.created_at < %(created_to)s"))
    if selection.uploader_id:
        clauses.append(sql.SQL("s.uploader_id = %(uploader_id)s"))
    if selection.song_ids is not None:
        clauses.append(sql.SQL("s.id = ANY(%(song_ids)s::uuid[])"))
    outdated = []
    if selection.current_rendition_version is not None:
        outdated.append(sql.SQL("s.rendition_version IS DISTINCT FROM %(current_rendition_version)s"))
    if selection.current_analysis_version is not None:
        outdated.append(sql.SQL("s.analysis_version IS DISTINCT FROM %(current_analysis_version)s"))
    if outdated:
        clauses.append(sql.SQL("(") + sql.SQL(" OR ").join(outdated) + sql.SQL(")"))
    return sql.SQL(" AND ").join(clauses), selection.model_dump()


def count_selection(settings: Settings, selection: Selection, after: str | None = None) -> int:
    """Songs selected (after the song id `after`, for a resumed run)."""
    where, params = _selection_filter(selection)
    if after:
        where = sql.SQL("s.id > %(after)s AND ") + where
    with pool(settings).connection() as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM songs s WHERE ") + where, {**params, "after": after}
        ).fetchone()
        return int(row[0]) if row else 0


class ReprocessRun(BaseModel):
    id: int
    name: str
    cursor_song_id: str | None
    enqueued: int
    finished: bool


def start_run(settings: Settings, name: str, selection: Selection, *, restart: bool = False) -> ReprocessRun:
    """The run called `name`: created, or found again to be continued from its cursor (or, with
    `restart`, walked again from the start)."""
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """INSERT INTO reprocess_runs (name, selection) VALUES (%(name)s, %(selection)s)
               ON CONFLICT (name) DO UPDATE SET updated_at = now(),
                   cursor_song_id = CASE WHEN %(restart)s THEN NULL ELSE reprocess_runs.cursor_song_id END,
                   finished_at = CASE WHEN %(restart)s THEN NULL ELSE reprocess_runs.finished_at END
               RETURNING id, name, cursor_song_id::text, enqueued, finished_at IS NOT NULL AS finished""",
            {"name": name, "selection": Jsonb(selection.model_dump()), "restart": restart},
        )
        row = cur.fetchone()
        assert row is not None
        return ReprocessRun(**row)


def enqueue_chunk(
    settings: Settings, run: ReprocessRun, selection: Selection, *, kind: str, limit: int
) -> tuple[ReprocessRun, list[str], int]:
    """Creates reprocess uploads for the next `limit` selected songs after the run's cursor, and moves
    the cursor, in one transaction: a run that dies half way continues where it stopped and never
    enqueues a song twice. Songs with no stored raw file, or with an upload already under way, are
    passed over. Returns (the run as it is now, the new upload ids, how many songs were examined)."""
    where, params = _selection_filter(selection)
    query = sql.SQL(
        """WITH batch AS (
               SELECT s.id FROM songs s
                WHERE s.id > COALESCE(%(cursor)s::uuid, '00000000-0000-0000-0000-000000000000') AND {where}
                ORDER BY s.id LIMIT %(limit)s),
           source AS (
               SELECT DISTINCT ON (u.song_id) u.song_id, u.user_id, u.file_name, u.original_size,
                      u.mime_type, u.storage_key
                 FROM uploads u JOIN batch b ON b.id = u.song_id
                WHERE u.storage_key IS NOT NULL
                ORDER BY u.song_id, u.created_at DESC),
           inserted AS (
               INSERT INTO uploads (user_id, file_name, original_size, mime_type, song_id, storage_key,
                                    status, kind, reprocess_run_id, dispatched_at)
               SELECT user_id, file_name, original_size, mime_type, song_id, storage_key,
                      'pending', %(kind)s, %(run)s, now()
                 FROM source
                -- One probe of the song's own uploads. NOT EXISTS, or a status condition in the WHERE,
                -- lets the planner scan every unfinished upload instead (a million, mid-run).
                WHERE (SELECT count(*) FILTER (WHERE busy.status IN ('pending', 'processing'))
                         FROM uploads busy WHERE busy.song_id = source.song_id) = 0
               RETURNING id)
        SELECT (SELECT id::text FROM batch ORDER BY id DESC LIMIT 1),
               (SELECT count(*) FROM batch),
               (SELECT coalesce(array_agg(id::text), '{{}}') FROM inserted)"""
    ).format(where=where)
    with pool(settings).connection() as conn, conn.transaction():
        # prepare=False: a generic prepared plan cannot see the cursor and walks the whole table.
        last, examined, upload_ids = conn.execute(
            query,
            {**params, "cursor": run.cursor_song_id, "limit": limit, "kind": kind, "run": run.id},
            prepare=False,
        ).fetchone() or (None, 0, [])
        finished = examined < limit
        conn.execute(
            """UPDATE reprocess_runs SET cursor_song_id = COALESCE(%s::uuid, cursor_song_id),
                      enqueued = enqueued + %s, updated_at = now(),
                      finished_at = CASE WHEN %s THEN now() END
                WHERE id = %s""",
            (last, len(upload_ids), finished, run.id),
        )
    moved = run.model_copy(
        update={
            "cursor_song_id": last or run.cursor_song_id,
            "enqueued": run.enqueued + len(upload_ids),
            "finished": finished,
        }
    )
    return moved, list(upload_ids), int(examined)


def retry_failed_uploads(settings: Settings, *, reason: str | None, limit: int) -> list[str]:
    """New upload rows for songs whose last upload failed (optionally for one reason code)."""
    with pool(settings).connection() as conn:
        rows = conn.execute(
            """WITH last AS (
                   SELECT DISTINCT ON (u.song_id) u.* FROM uploads u JOIN songs s ON s.id = u.song_id
                    WHERE s.status = 'failed' AND u.storage_key IS NOT NULL
                    ORDER BY u.song_id, u.created_at DESC)
               INSERT INTO uploads (user_id, file_name, original_size, mime_type, song_id, storage_key, status, kind,
                                    dispatched_at)
               SELECT user_id, file_name, original_size, mime_type, song_id, storage_key, 'pending', 'upload', now()
                 FROM last WHERE status = 'failed' AND (%s::text IS NULL OR error_code = %s)
                 LIMIT %s
               RETURNING id::text""",
            (reason, reason, limit),
        ).fetchall()
        return [r[0] for r in rows]


def failures_by_reason(settings: Settings, since_seconds: float) -> list[dict[str, Any]]:
    """The dead-letter view: failed and blocked uploads by reason code, with the latest message."""
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT error_code, status, kind, count(*) AS uploads, max(finished_at) AS latest,
                      (array_agg(error_message ORDER BY finished_at DESC))[1] AS example
                 FROM uploads
                WHERE error_code IS NOT NULL AND finished_at > now() - make_interval(secs => %s)
                GROUP BY error_code, status, kind ORDER BY uploads DESC""",
            (since_seconds,),
        )
        return cur.fetchall()


def status_counts(settings: Settings) -> dict[str, Any]:
    """Counts for `pipeline status` and the metrics exporter."""
    with pool(settings).connection() as conn:
        songs = dict(conn.execute("SELECT status::text, count(*) FROM songs GROUP BY 1").fetchall())
        uploads = dict(
            conn.execute(
                "SELECT status || ':' || kind, count(*) FROM uploads "
                "WHERE status IN ('pending', 'processing') OR finished_at > now() - interval '1 day' GROUP BY 1"
            ).fetchall()
        )
        oldest = conn.execute(
            """SELECT id::text, extract(epoch FROM now() - created_at) FROM uploads
                WHERE status = 'pending' ORDER BY created_at LIMIT 1"""
        ).fetchone()
        runs = conn.execute(
            """SELECT name, enqueued, finished_at IS NOT NULL FROM reprocess_runs
                ORDER BY updated_at DESC LIMIT 5"""
        ).fetchall()
    return {
        "songs": songs,
        "uploads": uploads,
        "oldest_pending": {"upload_id": oldest[0], "age_seconds": float(oldest[1])} if oldest else None,
        "reprocess_runs": [{"name": r[0], "enqueued": r[1], "finished": r[2]} for r in runs],
    }


def due_retired_objects(settings: Settings, limit: int = 500) -> list[str]:
    with pool(settings).connection() as conn:
        rows = conn.execute(
            "SELECT key FROM retired_objects WHERE delete_after <= now() ORDER BY delete_after LIMIT %s", (limit,)
        ).fetchall()
        return [r[0] for r in rows]


def forget_retired_objects(settings: Settings, keys: list[str]) -> None:
    with pool(settings).connection() as conn:
        conn.execute("DELETE FROM retired_objects WHERE key = ANY(%s)", (keys,))
