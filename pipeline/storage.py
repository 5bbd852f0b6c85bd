"""Object storage (S3 through boto3): raw uploads in, renditions and covers out."""

import logging
import os
from functools import cache
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from pipeline.errors import ContentError, Reason
from pipeline.settings import Settings

log = logging.getLogger(__name__)

# Rendition keys are never rewritten with other content, so clients and CDNs may cache them forever.
IMMUTABLE = "public, max-age=31536000, immutable"
# One request per object up to this size, on the calling thread. boto3's default (8 MB parts on 10
# threads) splits a 210 s 320 kbps rendition in two and a FLAC upload in eight: measured against the
# S3 server, single requests cost the worker ~30 % and the server ~50-80 % less CPU, and a worker's
# parallelism is its process pool. Larger objects (hours-long uploads) still go in parts.
TRANSFER = TransferConfig(multipart_threshold=256 * 2**20, multipart_chunksize=64 * 2**20, use_threads=False)


class ObjectStore:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.client: BaseClient = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region,
            config=Config(
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
            ),
        )

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def size_of(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def download(self, key: str, target: Path, *, max_bytes: int) -> int:
        """Downloads after checking the size, so an oversized object costs one HEAD, not a transfer."""
        size = self.size_of(key)
        if size is None:
            raise ContentError(Reason.SOURCE_MISSING, f"the raw object {key!r} does not exist")
        if size > max_bytes:
            raise ContentError(Reason.TOO_LARGE, f"the file is {size} bytes; the limit is {max_bytes}")
        self.client.download_file(self.bucket, key, str(target), Config=TRANSFER)
        return size

    def upload(self, source: Path, key: str, *, content_type: str, cache_control: str = IMMUTABLE) -> None:
        self.client.upload_file(
            str(source),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type, "CacheControl": cache_control},
            Config=TRANSFER,
        )


@cache
def _store_for(settings: Settings, pid: int) -> ObjectStore:
    return ObjectStore(settings)


def get_store(settings: Settings) -> ObjectStore:
    # boto3 clients must not cross a fork: one per worker process.
    return _store_for(settings, os.getpid())
