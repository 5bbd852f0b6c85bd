"""The upload contract, done from Python: raw object, then both rows in one transaction, then the task."""

import mimetypes
import uuid
from pathlib import Path

from pydantic import BaseModel

from pipeline import db
from pipeline.settings import Settings
from pipeline.storage import get_store


class Submitted(BaseModel):
    upload_id: str
    song_id: str
    storage_key: str


def submit_file(
    settings: Settings,
    path: Path,
    *,
    title: str | None = None,
    artist: str | None = None,
    user_id: str | None = None,
    send_task: bool = True,
) -> Submitted:
    """Steps 1-3 of the contract. With send_task=False the dispatcher picks the upload up by itself."""
    upload_id, song_id = str(uuid.uuid4()), str(uuid.uuid4())
    # The raw key never contains the user's file name.
    storage_key = f"raw/{upload_id}"
    mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    get_store(settings).upload(path, storage_key, content_type=mime_type, cache_control="private, no-store")
    with db.pool(settings).connection() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO songs (id, uploader_id, title, artist, status) VALUES (%s, %s, %s, %s, 'uploaded')",
            (song_id, user_id, (title or path.stem)[:255], (artist or "Unknown artist")[:255]),
        )
        conn.execute(
            """INSERT INTO uploads (id, user_id, file_name, original_size, mime_type, song_id, storage_key,
                                    status, dispatched_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending', CASE WHEN %s THEN now() END)""",
            (
                upload_id,
                user_id,
                path.name[:255],
                path.stat().st_size,
                mime_type,
                song_id,
                storage_key,
                send_task,
            ),
        )
    if send_task:
        from pipeline.tasks import process_upload  # loads the Celery app only when it is needed

        process_upload.apply_async(args=[upload_id])
    return Submitted(upload_id=upload_id, song_id=song_id, storage_key=storage_key)
