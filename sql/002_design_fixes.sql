-- Defects in the design document, fixed here so the rest of the platform gets them too.

-- 1. The fuzzy-search index needs pg_trgm, which the document never creates.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX idx_songs_title_artist ON songs USING gin ((title || ' ' || artist) gin_trgm_ops);

-- 2. The document says playlist positions are unique "deferrable for reordering", but a
--    unique INDEX can never be deferred: swapping two positions in one transaction fails.
--    A DEFERRABLE unique constraint does what was meant.
DROP INDEX idx_playlist_position;
ALTER TABLE playlist_songs
    ADD CONSTRAINT playlist_songs_position_key UNIQUE (playlist_id, position) DEFERRABLE INITIALLY DEFERRED;

-- 3. UNIQUE(email) already creates an index; idx_users_email only doubles the write cost.
DROP INDEX idx_users_email;

-- 4. Status and metadata are read by every client and must never be NULL (a NULL status
--    matches no state of the song lifecycle; `metadata || x` on NULL yields NULL and loses data).
UPDATE songs SET status = 'uploaded' WHERE status IS NULL;
UPDATE songs SET metadata = '{}' WHERE metadata IS NULL;
ALTER TABLE songs ALTER COLUMN status SET NOT NULL, ALTER COLUMN metadata SET NOT NULL;

-- 5. updated_at had a default but nothing kept it current on UPDATE.
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := CURRENT_TIMESTAMP;
    RETURN NEW;
END $$;
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER songs_updated_at BEFORE UPDATE ON songs FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER playlists_updated_at BEFORE UPDATE ON playlists FOR EACH ROW EXECUTE FUNCTION set_updated_at();
