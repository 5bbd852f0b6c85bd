-- Back-catalog reprocessing.

-- Why an upload row exists: a new file from a user, or a re-run of the pipeline on a song's stored
-- raw file (full, or analysis only). Reprocess rows go to their own low-priority queue.
ALTER TABLE uploads
    ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'upload'
        CONSTRAINT uploads_kind_check CHECK (kind IN ('upload', 'reprocess', 'reanalyze')),
    ADD COLUMN reprocess_run_id BIGINT;

-- What produced a song's current renditions and analysis, so "everything older than the current
-- profile" is a plain comparison. Backfilled from metadata for songs published before this column.
ALTER TABLE songs
    ADD COLUMN rendition_version INTEGER,
    ADD COLUMN analysis_version INTEGER;
UPDATE songs
   SET rendition_version = (metadata->>'profile_version')::int,
       analysis_version = (metadata->>'analysis_version')::int
 WHERE metadata ? 'profile_version' OR metadata ? 'analysis_version';

-- One row per `pipeline reprocess` selection: its cursor makes a second run continue, not repeat.
CREATE TABLE reprocess_runs (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(200) NOT NULL UNIQUE,
    selection JSONB NOT NULL,
    cursor_song_id UUID,  -- songs are walked in id order; everything <= cursor has been enqueued
    enqueued BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    finished_at TIMESTAMP WITH TIME ZONE
);
ALTER TABLE uploads ADD CONSTRAINT uploads_reprocess_run_fk
    FOREIGN KEY (reprocess_run_id) REFERENCES reprocess_runs(id) ON DELETE SET NULL;

-- Renditions replaced by a reprocess stay playable for a grace period (clients and caches may hold
-- the old keys), then a periodic task deletes them.
CREATE TABLE retired_objects (
    key VARCHAR(1024) PRIMARY KEY,
    song_id UUID,
    delete_after TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE INDEX idx_retired_objects_due ON retired_objects(delete_after);

GRANT SELECT, INSERT, DELETE ON retired_objects TO pipeline_worker;
GRANT SELECT ON reprocess_runs TO pipeline_worker;
GRANT UPDATE (rendition_version, analysis_version) ON songs TO pipeline_worker;
