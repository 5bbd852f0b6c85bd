"""Runtime configuration, read from the environment (and an optional .env file)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/pipeline"
    redis_url: str = "redis://127.0.0.1:6379/0"  # the platform cache (song:<id>)
    broker_url: str = "redis://127.0.0.1:6379/1"  # Celery; kept apart from the cache's keyspace

    s3_bucket: str = "audio-pipeline"
    # Empty means AWS itself; single-machine runs (demo) start an embedded S3 server instead.
    s3_endpoint_url: str = ""
    s3_region: str = Field(default="us-east-1", validation_alias="AWS_DEFAULT_REGION")

    renditions_file: Path = REPO_ROOT / "config" / "renditions.toml"
    work_dir: Path = Path("/tmp/audio-pipeline")  # scratch space for downloads and renditions

    # Policy limits: content over them is `blocked`, checked before any heavy work.
    max_upload_bytes: int = 500 * 1024 * 1024
    max_duration_seconds: float = 2 * 60 * 60
    min_duration_seconds: float = 1.0
    max_streams: int = 8
    max_cover_bytes: int = 10 * 1024 * 1024  # larger embedded pictures are ignored, not stored

    # Every ffmpeg/ffprobe child is killed with its process group past these.
    probe_timeout_seconds: float = 30.0
    ffmpeg_timeout_seconds: float = 1800.0
    ffmpeg_cpu_seconds: int = 3600
    excerpt_timeout_seconds: float = 120.0  # the preview: a seek and 30 s of encoding
    # Margin between the limits that follow from ffmpeg's (see celery_app.py and the README).
    step_grace_seconds: float = 300.0

    # A lost broker message never loses an upload: pending rows are re-sent after this.
    redispatch_after_seconds: float = 60.0
    sweep_interval_seconds: float = 2.0
    transient_max_retries: int = 5
    # A worker that dies leaves its upload `processing`; the reaper requeues it once its lease
    # expires, and fails it after this many attempts so a poison file cannot loop forever.
    max_attempts: int = 3
    # Renditions replaced by a reprocess are deleted this long after the swap (players and caches
    # may still hold the old keys; song:<id> lives 24 h in the platform cache).
    retired_object_grace_seconds: float = 24 * 60 * 60
    reap_interval_seconds: float = 60.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
