-- What the ingest pipeline needs on top of the platform schema.

-- The upload contract: which song an upload feeds and where its raw object is.
ALTER TABLE uploads
    ADD COLUMN song_id UUID REFERENCES songs(id) ON DELETE CASCADE,
    ADD COLUMN storage_key VARCHAR(1024),
    -- Outcome, readable by operators and the upload API: a stable code plus a human message.
    ADD COLUMN error_code VARCHAR(64),
    ADD COLUMN error_message TEXT,
    -- Bookkeeping for exactly-once processing and for the sweeps.
    ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN dispatched_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN claimed_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN lease_expires_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN finished_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP;

-- uploads.status was free text; the pipeline's states are these and only these.
UPDATE uploads SET status = 'pending' WHERE status IS NULL;
ALTER TABLE uploads
    ALTER COLUMN status SET NOT NULL,
    ADD CONSTRAINT uploads_status_check
        CHECK (status IN ('pending', 'processing', 'done', 'failed', 'blocked'));

CREATE TRIGGER uploads_updated_at BEFORE UPDATE ON uploads FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE INDEX idx_uploads_song ON uploads(song_id);
-- The dispatcher and reaper only ever look at unfinished uploads: keep that index tiny.
CREATE INDEX idx_uploads_unfinished ON uploads(created_at) WHERE status IN ('pending', 'processing');
CREATE INDEX idx_uploads_error ON uploads(error_code, finished_at) WHERE error_code IS NOT NULL;

-- Wake the dispatcher as soon as an upload commits; its periodic sweep is the backstop.
CREATE FUNCTION notify_upload_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pipeline_uploads', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER uploads_notify_pending AFTER INSERT OR UPDATE OF status ON uploads
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION notify_upload_pending();
