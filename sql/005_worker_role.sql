-- A group role with only what the workers and the scheduler need. Give each deployment a login
-- role in it, e.g.:  CREATE ROLE pipeline_worker_login LOGIN PASSWORD '...' IN ROLE pipeline_worker;
-- Migrations run as the owner; the upload API (which inserts songs and uploads) has its own role.
DO $$
BEGIN
    CREATE ROLE pipeline_worker NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- roles are cluster-wide: another database of this cluster created it already
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO pipeline_worker', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO pipeline_worker;

GRANT SELECT ON songs, uploads, cache_invalidations TO pipeline_worker;
GRANT UPDATE (status, job_id, attempts, dispatched_at, claimed_at, lease_expires_at, finished_at,
              error_code, error_message, updated_at) ON uploads TO pipeline_worker;
GRANT UPDATE (status, metadata, storage_keys, duration_seconds, album, genre, cover_image_key, updated_at)
    ON songs TO pipeline_worker;
GRANT INSERT, UPDATE, DELETE ON cache_invalidations TO pipeline_worker;
