"""Pure media work on local files: probing, transcoding, checking renditions. No database, S3 or Celery."""
