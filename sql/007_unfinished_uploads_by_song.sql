-- "Does this song have an upload under way?" is asked for every song a reprocess run enqueues;
-- this keeps each answer one probe of a small index, however many uploads are pending.
CREATE INDEX idx_uploads_unfinished_song ON uploads(song_id) WHERE status IN ('pending', 'processing');
