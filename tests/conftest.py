"""Real services for the tests: a fresh PostgreSQL database, Redis databases of their own, an S3 server
over HTTP (moto, on a free port), real ffmpeg, and real Celery worker and scheduler processes."""

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from pipeline.local_s3 import free_port, start_local_s3


class RedisServer:
    """A Redis of the tests' own, so that fault tests can stop and restart it without touching the
    machine's Redis."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()


REDIS = RedisServer(free_port())
REDIS.start()
atexit.register(REDIS.stop)  # also when the session ends before its fixtures are torn down

# The settings are read at import time by the Celery app, so the environment is set first. The time
# limits are short so that recovery from a dead worker (lease expiry) takes seconds, not half an hour.
_RUN = uuid.uuid4().hex[:8]
TEST_ENV = {
    "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/pipeline_test_{_RUN}",
    "REDIS_URL": f"redis://127.0.0.1:{REDIS.port}/0",
    "BROKER_URL": f"redis://127.0.0.1:{REDIS.port}/1",
    "S3_BUCKET": f"pipeline-test-{_RUN}",
    "WORK_DIR": f"/tmp/pipeline-test-{_RUN}",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "SWEEP_INTERVAL_SECONDS": "1",
    "REDISPATCH_AFTER_SECONDS": "10",
    "FFMPEG_TIMEOUT_SECONDS": "60",
    "EXCERPT_TIMEOUT_SECONDS": "20",
    "PROBE_TIMEOUT_SECONDS": "15",
    "STEP_GRACE_SECONDS": "5",
    "REAP_INTERVAL_SECONDS": "2",
}
os.environ.update(TEST_ENV)

from pipeline.migrate import migrate  # noqa: E402
from pipeline.samples import SampleTrack, make_samples  # noqa: E402
from pipeline.settings import Settings, get_settings  # noqa: E402


class S3Server:
    """moto's S3 server in a thread; its objects live in this process, so a restart keeps them."""

    def __init__(self) -> None:
        self.server, self.endpoint = start_local_s3()
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server, _ = start_local_s3(self.port)


S3 = S3Server()
os.environ["S3_ENDPOINT_URL"] = S3.endpoint
get_settings.cache_clear()

SAMPLES_DIR = Path("/tmp/pipeline-test-samples")  # generated once, reused across runs


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    settings = get_settings()
    migrate(settings.database_url)
    from pipeline.storage import get_store

    get_store(settings).ensure_bucket()
    yield settings
    from pipeline import db as pipeline_db

    pipeline_db.pool(settings).close()
    if os.environ.get("KEEP_TEST_DB"):
        return
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {settings.database_url.rsplit('/', 1)[1]} WITH (FORCE)")
    REDIS.stop()
    shutil.rmtree(settings.work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def samples() -> list[SampleTrack]:
    return make_samples(SAMPLES_DIR, seconds=40.0)


class Process:
    """A pipeline process (worker, scheduler) with its output in a log file the tests can read.

    `start` waits until the process says it is ready; tests may stop, kill and start it again.
    """

    def __init__(self, args: list[str], log_path: Path, ready_text: str) -> None:
        self.log_path = log_path
        self.args = args
        self.ready_text = ready_text
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, timeout: float = 120) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *self.args],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ},
            start_new_session=True,
        )
        self.wait_for_log(self.ready_text, timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole process group: what a machine dying looks like to the pipeline."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """What the process said since it was last started."""
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            assert self.running(), f"process exited:\n{self.log()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in log after {timeout} s:\n{self.log()[-3000:]}")


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = Process(
        ["worker", "--concurrency", "2", "--queues", "uploads,reprocess"],
        tmp_path_factory.mktemp("logs") / "worker.log",
        "ready.",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def scheduler(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = Process(["scheduler"], tmp_path_factory.mktemp("logs") / "scheduler.log", "beat: Starting")
    process.start()
    yield process
    process.stop()
