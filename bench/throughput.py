"""Throughput benchmark: the whole pipeline against what ffmpeg alone costs, in one invocation.

On one set of generated 3-4 minute tracks of mixed formats (mp3, 24-bit/96 kHz flac, wav, m4a, ogg, opus):

(a) the pipeline end to end: real `pipeline worker` processes, a fresh PostgreSQL database, a private
    redis-server and an S3 server in a process of its own, from `pending` uploads to `ready` songs,
    with 1 worker process before and after (c), then with 2;
(b) the naive baseline: four ffmpeg runs per track (high 320k, low 64k, 30 s preview, and a loudness
    pass with the pipeline's ebur128 settings, as loudness tools such as r128gain do it), then
    `librosa.load` + beat_track + chroma_cqt against Krumhansl-Kessler on the file;
(c) the floor: one ffmpeg process per track writing exactly the renditions the pipeline wrote for it
    (same copy/encode decisions, rates, channels, preview start), no analysis, S3 or database;
(c') the floor plus the one piece of analysis that ffmpeg itself does in the pipeline: the EBU R128
    loudness measurement (the `ebur128` filter, true peak included), in the same process.

CPU is the RUSAGE_CHILDREN delta of this process across each measured child's lifetime: a worker waits
for its pool processes, which wait for their ffmpeg, so the delta is the whole worker tree and nothing
else (the S3 and Redis servers are children too, but are only reaped at the very end). PostgreSQL and
the S3 server are not counted; the S3 server's CPU and the machine's total load are printed for context.

    .venv/bin/python bench/throughput.py            # 12 tracks of 210 s
    .venv/bin/python bench/throughput.py --quick    # 6 tracks of 60 s, for development
    .venv/bin/python bench/throughput.py --long     # plus a 2-hour input through a 1-process worker

For attribution it also runs the pipeline's own two ffmpeg commands and `analyze_pcm` outside Celery, and
breaks the pipeline's CPU down per step from the worker's `step=... done in ... (cpu ...)` log lines.

Generated inputs are cached under /tmp/pipeline-bench/. The exit code is 0 whatever the verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE_DIR = Path("/tmp/pipeline-bench")
# numba's on-disk cache outlives a run, as the Docker image's warmed cache does in production.
NUMBA_CACHE_DIR = CACHE_DIR / "numba-cache"
# One BLAS thread, as in a worker (pipeline/celery_app.py), for this process's attribution runs and the
# naive child too: (b) then differs from (a) by its design, not by a busy-waiting second BLAS thread.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
SAMPLE_RATE = 44100
FFMPEG_QUIET = ("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y")
TICKS = os.sysconf("SC_CLK_TCK")

# Targets from the issue.
MAX_A_OVER_C = 1.15
MIN_B_OVER_A = 1.4
MIN_SPEEDUP = 1.8
MAX_WORKER_RSS_MB = 400.0

# Encoder arguments per test format: typical release/upload settings for each.
FORMATS: dict[str, tuple[str, ...]] = {
    "mp3": ("-c:a", "libmp3lame", "-b:a", "320k"),  # CBR 320k: the pipeline stream-copies it into `high`
    "flac": ("-c:a", "flac", "-sample_fmt", "s32", "-ar", "96000"),  # 24-bit/96 kHz
    "wav": ("-c:a", "pcm_s16le"),
    "m4a": ("-c:a", "aac", "-b:a", "256k"),
    "ogg": ("-c:a", "libvorbis", "-q:a", "6"),
    "opus": ("-c:a", "libopus", "-b:a", "160k"),
}
# (bpm, tonic, mode) cycled over the tracks, so formats do not all carry the same music.
MUSIC = ((124.0, "A", "minor"), (96.0, "D", "major"), (140.0, "F#", "minor"), (110.0, "E", "major"))

# Krumhansl-Kessler probe-tone profiles (tonic first), for the naive key estimate.
KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)

# Matches the plain and the logfmt form of the pipeline's per-step line.
STEP_LINE = re.compile(r"\bupload=([\w-]+).*?\bstep=(\w+)\b.*?done in ([\d.]+) s \(cpu ([\d.]+) s")
WARM_UP_LINE = re.compile(r"analysis warmed up in ([\d.]+) s")


# --- measurement primitives ------------------------------------------------------------------------------


def children_cpu() -> float:
    """CPU seconds of every reaped descendant of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children_maxrss_mb() -> float:
    """RSS of the largest descendant reaped so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


def process_cpu(pid: int) -> float:
    """CPU seconds of one live process (its own threads, not its children)."""
    return _stat(pid)[1]


def _stat(pid: int) -> tuple[str, float, int]:
    """(command name, own CPU seconds, start time) of a live process, or ("", 0, 0) when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0.0, 0
    fields = stat.rsplit(")", 1)[1].split()
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    return name, (int(fields[11]) + int(fields[12])) / TICKS, int(fields[19])


def cpu_by_process() -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, start time) -> (name, CPU so far) of every live process: diffed around a run, it names the
    machine's other load (the start time tells a reused pid from the same process)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            name, cpu, started = _stat(int(entry.name))
            table[int(entry.name), started] = (name, cpu)
    return table


def own_cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> tuple[float, float]:
    """Waits until the machine's other load is under `threshold` cores (over 2 s), for at most `max_wait`
    seconds: wall-clock throughput means little while someone else holds one of two cores.
    Returns (seconds waited, the last load seen in cores)."""
    started = time.monotonic()
    while True:
        before = machine_busy_seconds()
        time.sleep(2.0)
        load = (machine_busy_seconds() - before) / 2.0
        waited = time.monotonic() - started
        if load < threshold or waited > max_wait:
            return waited, load


def run_measured(argv: list[str], **kwargs: Any) -> float:
    """Runs a child to completion and returns its CPU (with its own children)."""
    before = children_cpu()
    subprocess.run(argv, check=True, **kwargs)
    return children_cpu() - before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TreeSampler(threading.Thread):
    """Peak RSS of a process and all its descendants, read every `interval` seconds.

    Classes: the root (Celery's main process), pool processes (the other Python processes) and tools
    (ffmpeg/ffprobe, and setpriv for the instant before it execs them). A process's peak is the kernel's
    VmHWM (its RSS high-water mark), so no peak falls between two samples of a live process and the
    sampler can be slow: at 100 ms it cost ~2 CPU-s per run, CPU the two-worker run had to share.
    """

    TOOLS = frozenset({"ffmpeg", "ffprobe", "setpriv"})

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak_mb = {"main": 0.0, "pool": 0.0, "ffmpeg": 0.0, "tree": 0.0}
        # RssAnon and RssFile at each class's peak: file pages (a memory-mapped file) can be dropped
        # under pressure, anonymous ones cannot.
        self.peak_split_mb: dict[str, tuple[float, float]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def sample(self) -> None:
        total = 0.0
        for pid in self._tree(self.root):
            memory = _memory_mb(pid)
            if memory is None:
                continue
            comm, rss, hwm, anon, file = memory
            kind = "main" if pid == self.root else "ffmpeg" if comm in self.TOOLS else "pool"
            if hwm > self.peak_mb[kind]:
                self.peak_mb[kind] = hwm
                self.peak_split_mb[kind] = (anon, file)
            total += rss
        self.peak_mb["tree"] = max(self.peak_mb["tree"], total)

    def _tree(self, pid: int) -> Iterator[int]:
        yield pid
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            return
        for task in tasks:
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    yield from self._tree(int(child))


def _memory_mb(pid: int) -> tuple[str, float, float, float, float] | None:
    """(name, VmRSS, VmHWM, RssAnon, RssFile) of a live process, in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def mb(key: str) -> float:
        return int(fields.get(key, "0 kB").split()[0]) / 1024  # absent for zombies

    return fields["Name"].strip(), mb("VmRSS"), mb("VmHWM"), mb("RssAnon"), mb("RssFile")


# --- test material -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    path: Path
    fmt: str
    seconds: float
    title: str


def make_tracks(seconds: float, per_format: int) -> list[Track]:
    """Renders and encodes the test set once; later runs find it in the cache."""
    from pipeline.synth import render_track, write_wav

    out_dir = CACHE_DIR / f"tracks-{seconds:g}s"
    out_dir.mkdir(parents=True, exist_ok=True)
    tracks = []
    for copy in range(per_format):
        for index, (fmt, codec_args) in enumerate(FORMATS.items()):
            seed = copy * len(FORMATS) + index
            bpm, tonic, mode = MUSIC[seed % len(MUSIC)]
            target = out_dir / f"track-{seed:02d}.{fmt}"
            if not target.exists():
                wav = out_dir / f"track-{seed:02d}.source.wav"
                write_wav(wav, render_track(bpm, tonic, mode, seconds, SAMPLE_RATE, seed=seed), SAMPLE_RATE)
                tags = ("-metadata", f"title=Bench {seed}", "-metadata", "artist=Bench Band")
                partial = target.with_suffix(".part" + target.suffix)  # never leave a half file in the cache
                subprocess.run([*FFMPEG_QUIET, "-i", str(wav), *codec_args, *tags, str(partial)], check=True)
                partial.rename(target)
                wav.unlink()
            tracks.append(Track(target, fmt, seconds, f"Bench {seed} {tonic} {mode} {bpm:.0f}"))
    return tracks


def make_long_track(minutes: float) -> Track:
    """A long FLAC made cheaply: a 4-minute render looped by ffmpeg (44.1 kHz, 16-bit)."""
    from pipeline.synth import render_track, write_wav

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    base = CACHE_DIR / "long-base-240s.wav"
    if not base.exists():
        write_wav(base, render_track(118.0, "G", "major", 240.0, SAMPLE_RATE, seed=99), SAMPLE_RATE)
    target = CACHE_DIR / f"long-{minutes:g}min.flac"
    if not target.exists():
        partial = target.with_suffix(".part.flac")
        argv = [*FFMPEG_QUIET, "-stream_loop", "-1", "-i", str(base), "-t", str(minutes * 60), "-c:a", "flac"]
        subprocess.run([*argv, str(partial)], check=True)
        partial.rename(target)
    return Track(target, "flac", minutes * 60, f"Long mix {minutes:g} min")


# --- services for (a) ----------------------------------------------------------------------------------------


def wait_until(check: Any, what: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM (a Celery warm shutdown), then SIGKILL to the process group if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def services(run_dir: Path) -> Iterator[dict[str, str]]:
    """A fresh database, a private Redis and an S3 server process; yields the pipeline's environment."""
    import psycopg

    from pipeline.migrate import migrate

    run_id = run_dir.name.removeprefix("run-")
    redis_port, s3_port = free_port(), free_port()
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/pipeline_bench_{run_id}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "BROKER_URL": f"redis://127.0.0.1:{redis_port}/1",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "S3_BUCKET": f"pipeline-bench-{run_id}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "WORK_DIR": str(run_dir / "work"),
        "NUMBA_CACHE_DIR": str(NUMBA_CACHE_DIR),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        procs.append(redis)
        # Its own process, so its CPU is not the worker's and not this process's.
        with (run_dir / "s3-server.log").open("wb") as log:
            s3 = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "s3-server", "--port", str(s3_port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        procs.append(s3)
        wait_until(lambda: port_open(redis_port), "redis-server", proc=redis)
        wait_until(lambda: port_open(s3_port), "S3 server", proc=s3)
        env["_S3_PID"] = str(s3.pid)
        migrate(env["DATABASE_URL"])
        yield env
    finally:
        for proc in procs:
            stop_process(proc, timeout=10)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS pipeline_bench_{run_id} WITH (FORCE)")


# --- (a) the pipeline ------------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    label: str
    concurrency: int
    tracks: list[Track]
    cpu: float = 0.0  # worker tree, gross
    wall: float = 0.0  # first task sent -> last upload finished
    latencies: list[float] = field(default_factory=list)  # task sent -> upload finished, each upload
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    s3_cpu: float = 0.0
    machine_busy: float = 0.0  # whole machine, same interval as `cpu`
    lifetime: float = 0.0  # wall seconds from the worker's start to its exit
    self_cpu: float = 0.0  # this script over the same interval (polling, RSS sampling)
    quiet: tuple[float, float] = (0.0, 0.0)  # seconds waited for the machine to go quiet, load then
    others: dict[str, float] = field(default_factory=dict)  # other live processes' CPU, by name
    rss_split_mb: dict[str, tuple[float, float]] = field(default_factory=dict)  # anon, file at each peak
    uploads: dict[str, Track] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    log: str = ""
    ready_after: float = 0.0  # wall seconds from start to "ready." (imports, analysis warm-up)
    maxrss_after_mb: float = 0.0  # ru_maxrss of this process's descendants when the worker was reaped

    @property
    def audio_minutes(self) -> float:
        return sum(t.seconds for t in self.tracks) / 60


class Worker:
    """`pipeline worker` as a child of this process, with its log in a file and its tree sampled."""

    def __init__(self, concurrency: int, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.started = time.monotonic()
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker", "--concurrency", str(concurrency)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,  # so a stuck worker can be killed with its whole group
            )
        self.sampler = TreeSampler(self.proc.pid)
        self.sampler.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 300.0) -> None:
        try:
            wait_until(lambda: " ready." in self.log(), "worker", timeout, proc=self.proc)
        except RuntimeError:
            print(self.log()[-3000:], file=sys.stderr)
            raise

    def stop(self) -> None:
        stop_process(self.proc)
        self.sampler.stop()


def run_worker(
    label: str,
    concurrency: int,
    tracks: list[Track],
    env: dict[str, str],
    run_dir: Path,
    timeout: float = 3600,
    quiet_wait: float = 0.0,
) -> WorkerRun:
    """One worker's lifetime: start, (submit and wait for every track), stop. No tracks = idle baseline."""
    from pipeline.settings import get_settings
    from pipeline.submit import submit_file
    from pipeline.tasks import process_upload

    settings = get_settings()
    result = WorkerRun(label, concurrency, tracks)
    s3_pid = int(env["_S3_PID"])
    # The raw objects and rows are written before the worker starts and the tasks are sent all at once,
    # so the wall time measures processing, not this process uploading files to the S3 server.
    for track in tracks:
        done = submit_file(settings, track.path, title=track.title, artist="Bench Band", send_task=False)
        result.uploads[done.upload_id] = track
    if tracks:
        result.quiet = wait_for_quiet(quiet_wait)
    cpu0, busy0, s3_0, self0 = children_cpu(), machine_busy_seconds(), process_cpu(s3_pid), own_cpu_self()
    procs0 = cpu_by_process()
    worker = Worker(concurrency, env, run_dir / f"worker-{label.replace(' ', '-')}.log")
    try:
        worker.wait_ready()
        result.ready_after = time.monotonic() - worker.started
        if tracks:
            started = time.time()
            for upload_id in result.uploads:
                process_upload.apply_async(args=[upload_id])
            finished = wait_finished(list(result.uploads), worker, timeout)
            result.latencies = sorted(t - started for t in finished)
            result.wall = result.latencies[-1]
        else:
            time.sleep(1.0)  # an idle moment, as a worker has between tasks
    finally:
        worker.stop()
    result.cpu = children_cpu() - cpu0
    result.lifetime = time.monotonic() - worker.started
    result.machine_busy = machine_busy_seconds() - busy0
    result.s3_cpu = process_cpu(s3_pid) - s3_0
    result.self_cpu = own_cpu_self() - self0
    result.others = other_load(procs0, cpu_by_process(), exclude={os.getpid(), s3_pid})
    result.rss_peak_mb = dict(worker.sampler.peak_mb)
    result.rss_split_mb = dict(worker.sampler.peak_split_mb)
    result.log = worker.log()
    result.maxrss_after_mb = children_maxrss_mb()
    result.statuses = upload_statuses(list(result.uploads)) if tracks else {}
    return result


def other_load(
    before: dict[tuple[int, int], tuple[str, float]], after: dict[tuple[int, int], tuple[str, float]], exclude: set[int]
) -> dict[str, float]:
    """CPU by process name of the processes alive at the end (the worker tree is reaped by then)."""
    load: dict[str, float] = {}
    for key, (name, cpu) in after.items():
        if key[0] not in exclude:
            name = name.split("/")[0]  # kernel threads: "kworker/u8:0-events" and the like
            delta = cpu - before.get(key, (name, 0.0))[1]
            if delta > 0:
                load[name] = load.get(name, 0.0) + delta
    return dict(sorted(load.items(), key=lambda item: -item[1]))


def wait_finished(upload_ids: list[str], worker: Worker, timeout: float) -> list[float]:
    """Polls until no upload is pending or processing; returns when each finished (epoch seconds)."""
    from pipeline import db
    from pipeline.settings import get_settings

    settings = get_settings()
    deadline = time.monotonic() + timeout
    while db.unfinished_count(settings, upload_ids):
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.proc.returncode}:\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uploads unfinished after {timeout:.0f} s")
        time.sleep(0.25)
    with db.pool(settings).connection() as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM coalesce(finished_at, updated_at)) FROM uploads WHERE id = ANY(%s::uuid[])",
            (upload_ids,),
        ).fetchall()
    return [float(finished) for (finished,) in rows]


def upload_statuses(upload_ids: list[str]) -> dict[str, int]:
    from pipeline import db
    from pipeline.settings import get_settings

    with db.pool(get_settings()).connection() as conn:
        rows = conn.execute(
            """SELECT status || coalesce('/' || error_code, ''), count(*) FROM uploads
                WHERE id = ANY(%s::uuid[]) GROUP BY 1""",
            (upload_ids,),
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


def song_renditions(upload_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """upload id -> the renditions the pipeline recorded in songs.metadata."""
    from pipeline import db
    from pipeline.settings import get_settings

    with db.pool(get_settings()).connection() as conn:
        rows = conn.execute(
            """SELECT u.id::text, s.metadata->'renditions' FROM uploads u JOIN songs s ON s.id = u.song_id
                WHERE u.id = ANY(%s::uuid[]) AND u.status = 'done'""",
            (upload_ids,),
        ).fetchall()
    return {upload_id: renditions for upload_id, renditions in rows}


def step_cpu(log: str) -> dict[str, dict[str, float]]:
    """upload id -> step -> CPU seconds, from the worker's `done in` lines, in order of appearance."""
    steps: dict[str, dict[str, float]] = {}
    for upload_id, step, _wall, cpu in STEP_LINE.findall(log):
        steps.setdefault(upload_id, {})[step] = float(cpu)
    return steps


def ebur128_options() -> str:
    """The pipeline's ebur128 settings as a filter argument, for (b) and (c')."""
    from pipeline.media.loudness import EBUR128_OPTIONS

    return ":".join(f"{k}={v}" for k, v in EBUR128_OPTIONS.items())


# --- (c) the floor -----------------------------------------------------------------------------------------


def floor_command(
    source: Path, renditions: dict[str, dict[str, Any]], out_dir: Path, *, loudness: bool = False
) -> list[str]:
    """One ffmpeg: one decode feeding every encoded rendition, the preview trimmed from the same decode,
    `high` stream-copied when the pipeline copied it. Same muxer options as the pipeline. With `loudness`,
    the same decode also feeds the pipeline's ebur128 filter, as (c')."""
    from pipeline.media.profiles import load_profiles
    from pipeline.settings import get_settings

    profiles = {p.name: p for p in load_profiles(get_settings().renditions_file).profiles}
    mux = ("-map_metadata", "-1", "-id3v2_version", "0", "-write_id3v1", "0", "-write_xing", "1", "-f", "mp3")
    outputs: list[str] = []
    decoded: list[str] = []  # filter-graph labels needing the decoded audio
    filters: list[str] = []
    for name, rendition in renditions.items():
        profile = profiles[name]
        target = str(out_dir / f"{name}.mp3")
        if rendition["copied"]:
            outputs += ["-map", "0:a:0", "-c:a", "copy", *mux, target]
            continue
        label = f"[{name}]"
        if profile.duration_seconds is not None:
            start, length = rendition["start_seconds"], min(profile.duration_seconds, rendition["duration_seconds"])
            fade = min(profile.fade_seconds, length / 4)
            filters.append(
                f"[{name}_in]atrim=start={start}:duration={length},asetpts=PTS-STARTPTS,"
                f"afade=t=in:st=0:d={fade},afade=t=out:st={length - fade}:d={fade}{label}"
            )
            label = f"[{name}_in]"
        decoded.append(label)
        encode = ("-c:a", profile.codec, "-b:a", f"{profile.bitrate_kbps}k")
        shape = ("-ar", str(rendition["sample_rate"]), "-ac", str(rendition["channels"]))
        outputs += ["-map", f"[{name}]", *encode, *shape, *mux, target]
    if loudness:
        decoded.append("[loudness_in]")
        filters.append(f"[loudness_in]ebur128={ebur128_options()}[loudness]")
        outputs += ["-map", "[loudness]", "-f", "null", "-"]
    split = f"[0:a:0]asplit={len(decoded)}{''.join(decoded)}" if len(decoded) > 1 else f"[0:a:0]anull{decoded[0]}"
    graph = ";".join([split, *filters])
    return [*FFMPEG_QUIET, "-threads", "1", "-i", f"file:{source}", "-filter_complex", graph, *outputs]


@dataclass
class FloorRun:
    cpu: float
    per_upload: dict[str, float]
    size_diff: float  # largest relative size difference from the pipeline's renditions


def run_floor(
    uploads: dict[str, Track],
    renditions: dict[str, dict[str, dict[str, Any]]],
    run_dir: Path,
    *,
    loudness: bool = False,
) -> FloorRun:
    out_dir = run_dir / "floor"
    out_dir.mkdir(exist_ok=True)
    per_upload: dict[str, float] = {}
    worst = 0.0
    for upload_id, track in uploads.items():
        argv = floor_command(track.path, renditions[upload_id], out_dir, loudness=loudness)
        per_upload[upload_id] = run_measured(argv)
        for name, rendition in renditions[upload_id].items():
            size = (out_dir / f"{name}.mp3").stat().st_size
            worst = max(worst, abs(size - rendition["size_bytes"]) / rendition["size_bytes"])
    return FloorRun(sum(per_upload.values()), per_upload, worst)


# --- the pipeline's own pieces, for attribution -----------------------------------------------------------


@dataclass
class PiecesRun:
    """The pipeline's own ffmpeg commands and analysis, run here without Celery, S3 or the database."""

    full_ffmpeg: dict[str, float] = field(default_factory=dict)  # one decode: high, low and the analysis PCM
    preview_ffmpeg: dict[str, float] = field(default_factory=dict)  # the separate seek-and-encode preview
    analysis: dict[str, float] = field(default_factory=dict)  # analyze_pcm on that PCM, in this process
    error: str | None = None

    def total(self, part: str) -> float:
        return sum(getattr(self, part).values())


def own_cpu() -> float:
    """CPU of this process and its reaped children."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + children_cpu()


def run_pieces(uploads: dict[str, Track], renditions: dict[str, dict[str, dict[str, Any]]], run_dir: Path) -> PiecesRun:

    from pipeline import analysis
    from pipeline.media.probe import probe
    from pipeline.media.profiles import load_profiles
    from pipeline.media.transcode import PCM_SAMPLE_RATE, PcmFile, excerpt_command, full_length_command
    from pipeline.settings import get_settings

    out = run_dir / "pieces"
    out.mkdir(exist_ok=True)
    profiles = load_profiles(get_settings().renditions_file)
    pieces = PiecesRun()
    analysis.warm_up()  # as the worker does before its first task
    for upload_id, track in uploads.items():
        info = probe(track.path, timeout=60, cpu_seconds=60)  # not counted: the probe step's log has it
        targets = {p.name: out / f"{p.name}.{p.extension}" for p in profiles.full_length}
        pcm_path = out / "analysis.s16le"
        argv = full_length_command(track.path, info, profiles.full_length, targets, pcm_path)
        pieces.full_ffmpeg[upload_id] = run_measured(argv, stderr=subprocess.DEVNULL)  # its info-level log
        pcm = PcmFile(pcm_path)
        pieces.preview_ffmpeg[upload_id] = 0.0
        for profile in profiles.excerpts:
            assert profile.duration_seconds is not None
            length = min(profile.duration_seconds, pcm.size / PCM_SAMPLE_RATE)
            start = renditions[upload_id][profile.name]["start_seconds"]
            argv = excerpt_command(track.path, info, profile, start, length, out / f"{profile.name}.mp3")
            pieces.preview_ffmpeg[upload_id] += run_measured(argv)
        before = own_cpu()
        analysis.analyze_pcm(pcm, PCM_SAMPLE_RATE)
        pieces.analysis[upload_id] = own_cpu() - before
    return pieces


# --- (b) the naive baseline ------------------------------------------------------------------------------


def naive_ffmpeg_commands(source: Path, preview_start: float, out_dir: Path) -> list[list[str]]:
    """What a first version would do: an independent ffmpeg run per rendition and one for the loudness,
    each decoding the file, `high` always re-encoded. The preview starts where the pipeline's did, with the
    same fades; the loudness is measured as the pipeline measures it."""
    src = ("-i", str(source))
    mp3 = ("-c:a", "libmp3lame", "-b:a")
    fades = ("-af", "afade=t=in:st=0:d=1.5,afade=t=out:st=28.5:d=1.5")
    excerpt = ("-ss", f"{preview_start:.3f}", "-t", "30")
    return [
        [*FFMPEG_QUIET, *src, *mp3, "320k", "-ar", "44100", "-ac", "2", str(out_dir / "high.mp3")],
        [*FFMPEG_QUIET, *src, *mp3, "64k", "-ar", "22050", "-ac", "2", str(out_dir / "low.mp3")],
        [*FFMPEG_QUIET, *excerpt, *src, *fades, *mp3, "128k", "-ar", "44100", "-ac", "2", str(out_dir / "preview.mp3")],
        [*FFMPEG_QUIET, *src, "-af", f"ebur128={ebur128_options()}", "-f", "null", "-"],
    ]


@dataclass
class NaiveRun:
    ffmpeg_cpu: float  # 4 ffmpeg processes per track
    analysis_cpu: float  # the one librosa child, all of it
    one_off_cpu: float  # of which imports and numba JIT/cache loading, paid once per process
    per_upload: dict[str, float]  # ffmpeg + that track's analysis, no one-off
    child_maxrss_mb: float

    @property
    def total(self) -> float:
        return self.ffmpeg_cpu + self.analysis_cpu

    @property
    def steady(self) -> float:
        """Comparable with the pipeline's net CPU, which excludes the worker's own start-up."""
        return self.total - self.one_off_cpu


def run_naive(uploads: dict[str, Track], preview_starts: dict[str, float], run_dir: Path) -> NaiveRun:
    """Three ffmpeg children per track, then one Python child analysing every track."""
    out_dir = run_dir / "naive"
    out_dir.mkdir(exist_ok=True)
    per_upload = {}
    for upload_id, track in uploads.items():
        commands = naive_ffmpeg_commands(track.path, preview_starts[upload_id], out_dir)
        per_upload[upload_id] = sum(run_measured(argv) for argv in commands)
    ffmpeg_cpu = sum(per_upload.values())
    before = children_cpu()
    out = subprocess.run(
        [sys.executable, __file__, "--naive-analysis", *(str(t.path) for t in uploads.values())],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "NUMBA_CACHE_DIR": str(NUMBA_CACHE_DIR)},
    ).stdout
    analysis_cpu = children_cpu() - before
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for upload_id, line in zip(uploads, lines[1:-1], strict=True):
        per_upload[upload_id] += line["cpu"]
    return NaiveRun(ffmpeg_cpu, analysis_cpu, lines[0]["one_off_cpu"], per_upload, lines[-1]["maxrss_mb"])


def naive_analysis(paths: list[str]) -> None:
    """Child process of (b): librosa on each whole file; prints one JSON line per track."""

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    import warnings

    import librosa
    import numpy as np

    warnings.filterwarnings("ignore")  # audioread's deprecation warning for m4a, on every file
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

    def analyse(y: np.ndarray, sr: int) -> tuple[float, str]:
        tempo, _beats = librosa.beat.beat_track(y=y, sr=sr)
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
        scores = [
            (float(np.corrcoef(np.roll(profile, tonic), chroma)[0, 1]), f"{names[tonic]} {mode}")
            for mode, profile in (("major", np.array(KK_MAJOR)), ("minor", np.array(KK_MINOR)))
            for tonic in range(12)
        ]
        return float(np.atleast_1d(tempo)[0]), max(scores)[1]

    # librosa imports lazily and numba compiles (or loads its cache) on first use: a few seconds of
    # noise-plus-clicks pays that once, so it is reported apart from the per-track cost.
    t = np.arange(5 * 22050) / 22050
    analyse((0.1 * np.sin(2 * np.pi * 220 * t) + (np.sin(2 * np.pi * 2 * t) > 0.99)).astype(np.float32), 22050)
    print(json.dumps({"one_off_cpu": cpu()}), flush=True)
    for path in paths:
        started = cpu()
        y, sr = librosa.load(path, sr=22050, mono=True)
        bpm, key = analyse(y, int(sr))
        print(json.dumps({"path": path, "cpu": cpu() - started, "bpm": round(bpm, 1), "key": key}), flush=True)
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


# --- report --------------------------------------------------------------------------------------------------


@dataclass
class Results:
    runs: dict[int, WorkerRun]  # by concurrency
    # W=1 once more after the floor: a single ffmpeg run varies by up to 10 % over minutes on this
    # machine, and the mean of the runs before and after the floor cancels a steady drift (a-c-a).
    repeat: WorkerRun
    idle: dict[int, WorkerRun]
    first_start: WorkerRun  # the run's first worker start, with the numba cache as it was found
    naive: NaiveRun
    floor: FloorRun
    floor_loudness: FloorRun  # (c')
    pieces: PiecesRun
    long: tuple[WorkerRun, FloorRun] | None = None

    def net(self, run: WorkerRun) -> float:
        return run.cpu - self.idle[run.concurrency].cpu

    @property
    def pipeline_runs(self) -> tuple[WorkerRun, WorkerRun, WorkerRun]:
        """The three timed runs in the order they ran: W=1, W=1 again after the floor, W=2."""
        return self.runs[1], self.repeat, self.runs[2]

    @property
    def a(self) -> float:
        """(a): the W=1 pipeline's net CPU, the mean of its runs either side of the floor."""
        return (self.net(self.runs[1]) + self.net(self.repeat)) / 2


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def cold_start(run: WorkerRun) -> str:
    """The first upload's summed step CPU against the median of the others (of its format if any)."""
    steps = step_cpu(run.log)
    if len(steps) < 2:
        return "fewer than two uploads logged their steps"
    order = list(steps)
    first, fmt = order[0], run.uploads[order[0]].fmt
    peers = [u for u in order[1:] if run.uploads[u].fmt == fmt]
    peer_label = f"the other {fmt} upload(s)" if peers else "all other uploads (mixed formats: indicative only)"
    peers = peers or order[1:]

    def whole(upload_id: str) -> float:  # the media step's line already includes its parts
        return steps[upload_id].get("media", 0.0) + steps[upload_id].get("publish", 0.0)

    first_cpu = whole(first)
    median = statistics.median(whole(u) for u in peers)
    by_step = ", ".join(
        f"{step} {cpu:.2f} vs {statistics.median(steps[u].get(step, 0.0) for u in peers):.2f}"
        for step, cpu in steps[first].items()
    )
    return (
        f"first upload ({fmt}) {first_cpu:.2f} CPU-s in its steps vs median {median:.2f} of {peer_label}:"
        f" {first_cpu - median:+.2f} s ({by_step})"
    )


def print_report(args: argparse.Namespace, res: Results) -> None:
    base = res.runs[1]
    n, minutes = len(base.tracks), base.audio_minutes
    print(
        f"\n=== {n} tracks ({', '.join(FORMATS)} x{args.per_format}), {args.seconds:g} s each = {minutes:.1f} audio-min"
    )
    print("    outcomes: " + "; ".join(f"{run.label} {run.statuses}" for run in res.pipeline_runs))
    print_cpu(res)
    print_wall(res)
    print_rss(res)
    warm = WARM_UP_LINE.search(base.log)
    warm_text = f"{float(warm.group(1)):.2f} s" if warm else "not in the worker's log"
    print(f"\n  cold start: worker ready after {res.idle[1].ready_after:.1f} s and {res.idle[1].cpu:.1f} CPU-s", end="")
    print(f" (analysis warm-up line: {warm_text});\n    W=1 {cold_start(base)}")
    print_breakdown(res)
    if res.long:
        print_long(res, *res.long)


def print_cpu(res: Results) -> None:
    """CPU per track and per audio-minute of (a), (b) and (c), and the two CPU ratios."""
    base, naive = res.runs[1], res.naive
    n, minutes = len(base.tracks), base.audio_minutes
    print(f"\n{'':44}{'CPU s':>8}{'s/track':>9}{'s/audio-min':>13}")

    def row(label: str, cpu: float) -> None:
        print(f"  {label:42}{cpu:8.1f}{cpu / n:9.2f}{cpu / minutes:13.2f}")

    for run in res.pipeline_runs:
        row(f"(a) {run.label}, net of idle worker", res.net(run))
        row(f"(a) {run.label}, gross", run.cpu)
    row("(b) naive, steady state", naive.steady)
    row("(b) naive, with its one-off librosa start", naive.total)
    row("      of which 4x ffmpeg", naive.ffmpeg_cpu)
    row("      of which the librosa child", naive.analysis_cpu)
    row("(c) floor, one ffmpeg per track", res.floor.cpu)
    row("(c') floor + ebur128 loudness in that ffmpeg", res.floor_loudness.cpu)
    print(f"      one-off librosa imports + numba in the naive child: {naive.one_off_cpu:.1f} CPU-s")
    print(f"      floor renditions' sizes within {res.floor.size_diff:.2%} of the pipeline's")
    starts = [res.first_start, *res.idle.values()]
    print("      worker start-up (start, warm-up, ready, 1 s idle, stop): " + "; ".join(
        f"{r.label} {r.cpu:.1f} CPU-s, ready after {r.ready_after:.1f} s" for r in starts
    ))  # fmt: skip

    # The target is set against the floor that does the same ffmpeg work as the pipeline: the renditions
    # and the loudness measurement, which ffmpeg itself does in the pipeline's one decode.
    a, c, c_renditions = res.a, res.floor_loudness.cpu, res.floor.cpu
    print(f"\n  a/c' = {a / c:.3f}   (target <= {MAX_A_OVER_C})   {verdict(a / c <= MAX_A_OVER_C)}")
    print(
        f"        [a = mean of the W=1 runs before and after the floor, net: {res.net(base) / c:.3f} and"
        f" {res.net(res.repeat) / c:.3f}; W=2 net gives {res.net(res.runs[2]) / c:.3f}, W=1 gross {base.cpu / c:.3f}]"
    )
    print(
        f"  a/c  = {a / c_renditions:.3f}   [against the renditions alone; the loudness measurement costs"
        f" {(c - c_renditions) / n:.2f} CPU-s/track = {c / c_renditions - 1:.1%} of (c)]"
    )
    print(f"  b/a = {naive.steady / a:.3f}   (target >= {MIN_B_OVER_A})   {verdict(naive.steady / a >= MIN_B_OVER_A)}")
    print(f"        [steady state both; with one-off start-up costs on both sides {naive.total / base.cpu:.3f}]")


def print_wall(res: Results) -> None:
    """Throughput with 1 and 2 worker processes, the machine's load meanwhile, and per-upload latency."""
    n, minutes = len(res.runs[1].tracks), res.runs[1].audio_minutes
    print("\n  wall, first task sent -> last upload finished:")
    singles = res.pipeline_runs[:2]
    for run in res.pipeline_runs:
        other = run.machine_busy - run.cpu - run.s3_cpu - run.self_cpu
        rates = f"{n / run.wall * 60:5.2f} tracks/min, {minutes / run.wall:5.2f} audio-min/min"
        waited, load = run.quiet
        print(f"    {run.label}: {run.wall:7.1f} s = {rates}   (load before: {load:.2f} cores, after {waited:.0f} s)")
        named = ", ".join(f"{name} {cpu:.1f}" for name, cpu in list(run.others.items())[:4])
        print(
            f"         machine busy over the worker's {run.lifetime:.0f} s: worker tree {run.cpu:.1f} CPU-s,"
            f" S3 server {run.s3_cpu:.1f}, this script {run.self_cpu:.1f}; everything else {other:.1f}"
            f" = {other / run.lifetime:.2f} of {os.cpu_count()} cores (top live: {named or 'none'})"
        )
        lat = run.latencies
        print(
            f"         latency, task sent -> finished: first {lat[0]:.1f} s, median {statistics.median(lat):.1f} s,"
            f" last {lat[-1]:.1f} s"
        )
    batch = statistics.fmean(run.wall for run in singles) / res.runs[2].wall
    steady = {1: statistics.fmean(backlog_rate(run.latencies, 1) for run in singles)}
    steady[2] = backlog_rate(res.runs[2].latencies, 2)
    speedup = steady[2] / steady[1]
    print(f"  batch: W=1 wall (mean of 2) / W=2 wall = {batch:.2f}x (with the tail: the last upload runs alone)")
    print(f"  backlog throughput, all workers busy: W=1 {steady[1] * 60:.2f}, W=2 {steady[2] * 60:.2f} tracks/min")
    print(f"  2-worker speed-up = {speedup:.2f}x   (target >= {MIN_SPEEDUP}x)   {verdict(speedup >= MIN_SPEEDUP)}")


def backlog_rate(finished: list[float], workers: int) -> float:
    """Uploads per second while every worker process was busy with a backlog behind it.

    Between the `workers`-th finish and the `workers`-th last one no process is idle: before it, the
    first uploads all started together; after it, the backlog is empty and processes run out of work
    one by one (a batch's tail, whose length depends on the batch, not on the pipeline). Reprocessing a
    catalog is all backlog, so this is the throughput that prices it.
    """
    times = sorted(finished)
    first, last = times[workers - 1], times[len(times) - workers]
    return (len(times) - 2 * workers + 1) / (last - first)


def print_rss(res: Results) -> None:
    """Peak RSS per process class of every worker run, and the verdict over the pipeline runs."""
    print(f"\n  peak RSS, MB (VmHWM every 500 ms){'main':>8}{'pool':>8}{'ffmpeg':>8}{'tree':>8}   ru_maxrss so far")
    rss_runs = [*res.pipeline_runs, *([res.long[0]] if res.long else [])]
    for run in [res.first_start, *rss_runs]:
        p = run.rss_peak_mb
        print(
            f"    {run.label:32}{p['main']:8.0f}{p['pool']:8.0f}{p['ffmpeg']:8.0f}{p['tree']:8.0f}"
            f"   {run.maxrss_after_mb:.0f}"
        )
    for run in rss_runs:
        split = ", ".join(f"{k} {a:.0f}+{f:.0f}" for k, (a, f) in run.rss_split_mb.items() if k != "tree")
        print(f"      {run.label} when each peak was seen, RssAnon+RssFile: {split}")
    print(f"    naive librosa child: {res.naive.child_maxrss_mb:.0f} MB (ru_maxrss of that process)")
    worker_peak = max(max(r.rss_peak_mb["main"], r.rss_peak_mb["pool"]) for r in rss_runs)
    scope = "incl. the long input" if res.long else "no long input: run with --long"
    ok = worker_peak < MAX_WORKER_RSS_MB
    print(f"  worker peak RSS = {worker_peak:.0f} MB   (target < {MAX_WORKER_RSS_MB:.0f}, {scope})   {verdict(ok)}")


def print_breakdown(res: Results) -> None:
    """Per format, CPU-s per track, and where the pipeline's CPU beyond the floor goes (W=1 step logs)."""
    run, pieces = res.runs[1], res.pieces
    steps = step_cpu(run.log)
    if not steps:
        print("\n  (no `step=... done in ... (cpu ...)` lines in the worker's log: per-step breakdown unavailable)")
        return
    parts = ("probe", "transcode", "analyze")  # logged inside the media step, whose line includes them
    names = (*parts, "media", "publish")
    print("\n  per format, mean CPU-s per track (pipeline steps from the W=1 worker's log; ffmpeg* = the pipeline's")
    print("  own two ffmpeg commands run outside Celery; media includes probe, transcode and analyze):")
    print(
        f"    {'format':8}{'floor':>8}{'ffmpeg*':>9}" + "".join(f"{s:>10}" for s in names) + f"{'steps':>8}{'naive':>8}"
    )
    by_fmt: dict[str, list[str]] = {}
    for upload_id, track in run.uploads.items():
        by_fmt.setdefault(track.fmt, []).append(upload_id)
    mean = statistics.fmean
    for fmt, ids in by_fmt.items():
        cells = [mean(steps.get(u, {}).get(s, 0.0) for u in ids) for s in names]
        floor = mean(res.floor.per_upload.get(u, 0.0) for u in ids)
        ffmpeg = mean(pieces.full_ffmpeg.get(u, 0.0) + pieces.preview_ffmpeg.get(u, 0.0) for u in ids)
        naive = mean(res.naive.per_upload.get(u, 0.0) for u in ids)
        print(
            f"    {fmt:8}{floor:8.2f}{ffmpeg:9.2f}"
            + "".join(f"{c:10.2f}" for c in cells)
            + f"{sum(cells[len(parts) :]):8.2f}{naive:8.2f}"
        )
    if pieces.error:
        print(f"    (attribution unavailable: {pieces.error})")
        return
    total = {name: sum(s.get(name, 0.0) for s in steps.values()) for name in names}
    full, preview, analysis = (pieces.total(x) for x in ("full_ffmpeg", "preview_ffmpeg", "analysis"))
    net, floor = res.net(run), res.floor.cpu
    lines = [
        ("(c) floor: one ffmpeg per track", floor),
        ("pipeline's full-length ffmpeg (high, low, analysis PCM, loudness)", full),
        ("pipeline's preview ffmpeg (a second decode, from -ss)", preview),
        ("  -> its ffmpeg work beyond the floor", full + preview - floor),
        ("     of which the loudness measurement, (c') - (c)", res.floor_loudness.cpu - floor),
        ("analyze_pcm alone (warm, in-process)", analysis),
        ("media/probe (ffprobe, mutagen, song row, cover)", total["probe"]),
        ("media/transcode minus its ffmpeg (uploads to S3, checks)", total["transcode"] - full - preview),
        ("media/analyze minus analyze_pcm", total["analyze"] - analysis),
        ("media outside its parts (raw download, lease, scratch)", total["media"] - sum(total[p] for p in parts)),
        ("publish step", total["publish"]),
        ("worker CPU outside steps (claim, Celery, events; net of idle)", net - total["media"] - total["publish"]),
        ("(a) pipeline W=1 net", net),
    ]
    print("\n  where the pipeline's CPU goes, W=1, CPU-s over all tracks (share of the floor):")
    for label, cpu in lines:
        print(f"    {label:70}{cpu:8.1f}{cpu / floor:8.1%}")


def print_long(res: Results, run: WorkerRun, floor: FloorRun) -> None:
    net, minutes, p = res.net(run), run.audio_minutes, run.rss_peak_mb
    print(f"\n=== long input: {run.tracks[0].path.name}, {minutes:.0f} audio-min, W=1: {run.statuses}")
    print(
        f"  pipeline: {net:.1f} CPU-s net ({net / minutes:.2f} s/audio-min), {run.cpu:.1f} gross; wall {run.wall:.0f} s"
    )
    if floor.per_upload:
        per_minute = floor.cpu / minutes
        print(f"  floor (c'): {floor.cpu:.1f} CPU-s ({per_minute:.2f} s/audio-min); a/c' = {net / floor.cpu:.3f}")
    print(f"  peak RSS: main {p['main']:.0f} MB, pool {p['pool']:.0f} MB, ffmpeg {p['ffmpeg']:.0f} MB")
    for cpus in step_cpu(run.log).values():
        print("  steps, CPU-s: " + ", ".join(f"{step} {cpu:.1f}" for step, cpu in cpus.items()))


# --- main ----------------------------------------------------------------------------------------------------


def run_long(env: dict[str, str], run_dir: Path, minutes: float, quiet_wait: float) -> tuple[WorkerRun, FloorRun]:
    from pipeline.settings import Settings

    track = make_long_track(minutes)
    defaults = Settings()
    limits = {}  # raised only when the policy would refuse the file: a 2 h input is at the duration limit
    if track.seconds + 60 > defaults.max_duration_seconds:
        limits["MAX_DURATION_SECONDS"] = str(track.seconds + 100)
    if track.path.stat().st_size > defaults.max_upload_bytes:
        limits["MAX_UPLOAD_BYTES"] = str(track.path.stat().st_size + 1)
    print(f"    {track.path.name}: {track.path.stat().st_size / 2**20:.0f} MiB; raised limits: {limits or 'none'}")
    run = run_worker("long W=1", 1, [track], {**env, **limits}, run_dir, timeout=4 * 3600, quiet_wait=quiet_wait)
    renditions = song_renditions(list(run.uploads))
    if not renditions:
        return run, FloorRun(float("nan"), {}, 0.0)
    return run, run_floor(run.uploads, renditions, run_dir, loudness=True)


def measure(tracks: list[Track], env: dict[str, str], run_dir: Path, args: argparse.Namespace) -> Results:
    runs, idle = {}, {}
    print("(a) first worker start (numba cache as found) ...", flush=True)
    first_start = run_worker("first start W=1", 1, [], env, run_dir)
    print("(a) idle worker W=1 ...", flush=True)
    idle[1] = run_worker("idle W=1", 1, [], env, run_dir)
    print(f"(a) pipeline W=1: {len(tracks)} uploads ...", flush=True)
    runs[1] = run_worker("pipeline W=1", 1, tracks, env, run_dir, quiet_wait=args.quiet_wait)
    renditions = song_renditions(list(runs[1].uploads))
    done = {u: t for u, t in runs[1].uploads.items() if u in renditions}
    print(f"(c) floor: {len(done)} ffmpeg processes ...", flush=True)
    floor = run_floor(done, renditions, run_dir)
    print(f"(c') floor with the loudness measurement: {len(done)} ffmpeg processes ...", flush=True)
    floor_loudness = run_floor(done, renditions, run_dir, loudness=True)
    print(f"(a) pipeline W=1 again, after the floor: {len(tracks)} uploads ...", flush=True)
    repeat = run_worker("pipeline W=1 again", 1, tracks, env, run_dir, quiet_wait=args.quiet_wait)
    print("(a) idle worker W=2 ...", flush=True)
    idle[2] = run_worker("idle W=2", 2, [], env, run_dir)
    print(f"(a) pipeline W=2: {len(tracks)} uploads ...", flush=True)
    runs[2] = run_worker("pipeline W=2", 2, tracks, env, run_dir, quiet_wait=args.quiet_wait)
    print("(b) naive: 4 ffmpeg per track, then one librosa process ...", flush=True)
    naive = run_naive(done, {u: renditions[u]["preview"]["start_seconds"] for u in done}, run_dir)
    print("attribution: the pipeline's own ffmpeg commands and analyze_pcm, outside Celery ...", flush=True)
    try:
        pieces = run_pieces(done, renditions, run_dir)
    except Exception as exc:  # internal signatures may change under us; the benchmark proper still stands
        pieces = PiecesRun(error=f"{type(exc).__name__}: {exc}")
    results = Results(runs, repeat, idle, first_start, naive, floor, floor_loudness, pieces)
    if args.long:
        print(f"--long: a {args.long_minutes:g}-minute input through W=1 ...", flush=True)
        results.long = run_long(env, run_dir, args.long_minutes, args.quiet_wait)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 s tracks, one per format (development)")
    parser.add_argument("--seconds", type=float, help="track length (default 210, or 60 with --quick)")
    parser.add_argument("--per-format", type=int, help="tracks per format (default 2, or 1 with --quick)")
    parser.add_argument("--long", action="store_true", help="also a long input through a 1-process worker")
    parser.add_argument("--long-minutes", type=float, default=120.0, help="length of the --long input")
    parser.add_argument(
        "--quiet-wait", type=float, default=180.0, help="seconds to wait for other load to stop before a timed run"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory with the worker logs")
    parser.add_argument("--naive-analysis", nargs="+", help=argparse.SUPPRESS)  # the (b) child process
    args = parser.parse_args()
    if args.naive_analysis:
        naive_analysis(args.naive_analysis)
        return
    args.seconds = args.seconds or (60.0 if args.quick else 210.0)
    args.per_format = args.per_format or (1 if args.quick else 2)

    print(f"preparing {args.per_format * len(FORMATS)} tracks of {args.seconds:g} s in {CACHE_DIR} ...", flush=True)
    tracks = make_tracks(args.seconds, args.per_format)
    run_dir = CACHE_DIR / f"run-{uuid.uuid4().hex[:8]}"  # logs and scratch; its id also names the database
    run_dir.mkdir(parents=True)
    try:
        with services(run_dir) as env:
            # pipeline.celery_app reads the settings when it is imported, so the environment comes first.
            os.environ.update(env)
            from pipeline import db
            from pipeline.settings import get_settings
            from pipeline.storage import ObjectStore

            get_settings.cache_clear()
            ObjectStore(get_settings()).ensure_bucket()
            try:
                results = measure(tracks, env, run_dir, args)
            finally:
                db.pool(get_settings()).close()  # before the database is dropped
        print_report(args, results)
    finally:
        for scratch in ("work", "floor", "naive", "pieces"):
            shutil.rmtree(run_dir / scratch, ignore_errors=True)
        if args.keep_logs:
            print(f"\nlogs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
