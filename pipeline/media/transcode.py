"""Renditions from one upload: one ffmpeg decode for every full-length rendition, the analysis PCM and the
loudness measurement, then a short seek-and-encode per excerpt (the preview), each result checked.

An upload whose audio parameters change mid-stream (MP3s or ADTS streams of different sample rates joined
byte-wise, chained Ogg) is told by that same decode: ffmpeg rebuilds its filters at each change, so the
loudness filter prints more than one summary. Such a stream is never copied (a copy keeps the mixed frames,
and its header's duration is wrong), and its timestamps cannot be trusted (a demuxer times every frame at
the first part's rate), so its previews are cut from an encoded full-length rendition, whose timeline is
the decoded samples', instead of by a seek into the source.
"""

import logging
import re
import time
from pathlib import Path

import ffmpeg
import mutagen
import mutagen.mp3
import numpy as np
from pydantic import BaseModel, ConfigDict

from pipeline.errors import ContentError, Reason
from pipeline.media.loudness import EBUR128_OPTIONS, REASON_STREAM_CHANGED, Loudness, parse_ebur128_summary
from pipeline.media.probe import ALLOWED_DEMUXERS, ProbeResult
from pipeline.media.profiles import RenditionProfile, RenditionSet
from pipeline.media.runner import ToolError, ToolTimeout, run_tool

log = logging.getLogger(__name__)

# The analysis step reads mono 16-bit little-endian PCM at this rate.
PCM_SAMPLE_RATE = 22050
PCM_DTYPE = np.dtype("<i2")

_GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-v", "error")
# The full decode logs at info level, each line tagged with its level: the loudness summary is an info
# line, and an error message is told from it by its tag.
_LOUDNESS_LOG_ARGS = ("-nostdin", "-hide_banner", "-nostats", "-v", "level+info")
_ERROR_LINE = re.compile(r"\[(?:warning|error|fatal|panic)\] ")


class Rendition(BaseModel):
    """A rendition file as ffprobe sees it after encoding."""

    model_config = ConfigDict(frozen=True)

    profile: str
    path: Path
    content_type: str
    size_bytes: int
    duration_seconds: float
    codec: str
    bit_rate: int | None
    sample_rate: int
    channels: int
    start_seconds: float = 0.0  # where an excerpt begins in the source
    copied: bool = False  # stream-copied from the source rather than encoded


class TranscodeResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    renditions: tuple[Rendition, ...]
    pcm_path: Path  # mono s16le at PCM_SAMPLE_RATE, for analysis
    loudness: Loudness
    decoded_seconds: float  # the truth when a header lies (a truncated file declares its full length)
    stream_changed: bool = False  # the audio's parameters change mid-stream (see the module's docstring)


def transcode(
    source: Path,
    info: ProbeResult,
    profiles: RenditionSet,
    out_dir: Path,
    *,
    timeout: float,
    excerpt_timeout: float,
    cpu_seconds: int,
) -> TranscodeResult:
    pcm_path = out_dir / "analysis.s16le"
    full = {p.name: out_dir / f"{p.name}.{p.extension}" for p in profiles.full_length}
    started = time.monotonic()
    log_text = _run(full_length_command(source, info, profiles.full_length, full, pcm_path), timeout, cpu_seconds)
    decoded_seconds = pcm_path.stat().st_size // PCM_DTYPE.itemsize / PCM_SAMPLE_RATE
    if decoded_seconds == 0:
        raise ContentError(Reason.DECODE_ERROR, "the audio stream decoded to nothing")
    loudness = parse_ebur128_summary(log_text, decoded_seconds)
    changed = loudness.null_reason == REASON_STREAM_CHANGED

    copies = tuple(p for p in profiles.full_length if plan_output(p, info).stream_copy)
    if changed:
        log.info("audio parameters change mid-stream: nothing copied, previews cut from a full-length rendition")
    if changed and copies:
        # A second decode, for such uploads only. It shares the full run's time limit, from which the media
        # step's own limit is derived.
        remaining = max(timeout - (time.monotonic() - started), 1.0)
        _run(reencode_command(source, info, copies, full), remaining, cpu_seconds)
    renditions = [
        check_rendition(full[p.name], p, info, expected_seconds=decoded_seconds, stream_changed=changed)
        for p in profiles.full_length
    ]
    cut_from = excerpt_source(renditions, profiles.full_length) if changed else None
    energy = second_energies(pcm_path, PCM_SAMPLE_RATE) if profiles.excerpts else np.zeros(0)
    for profile in profiles.excerpts:
        assert profile.duration_seconds is not None
        length = min(profile.duration_seconds, decoded_seconds)
        start = choose_excerpt_start(energy, length)
        target = out_dir / f"{profile.name}.{profile.extension}"
        argv = excerpt_command(source, info, profile, start, length, target, cut_from=cut_from)
        _run(argv, excerpt_timeout, cpu_seconds)
        rendition = check_rendition(target, profile, info, expected_seconds=length)
        renditions.append(rendition.model_copy(update={"start_seconds": start}))
    return TranscodeResult(
        renditions=tuple(renditions),
        pcm_path=pcm_path,
        loudness=loudness,
        decoded_seconds=decoded_seconds,
        stream_changed=changed,
    )


class OutputPlan(BaseModel):
    """What one rendition will be for one source: the profile's decisions applied to the probe."""

    model_config = ConfigDict(frozen=True)

    stream_copy: bool
    bit_rate: int  # bits/s; for a copy, the most it may be
    sample_rate: int
    channels: int


def plan_output(profile: RenditionProfile, info: ProbeResult, *, stream_changed: bool = False) -> OutputPlan:
    """`stream_changed`: the audio's parameters change mid-stream, so it is never copied (the probe describes
    only its first part)."""
    source_rate = info.audio.bit_rate or info.bit_rate or 0
    copy = (
        not stream_changed
        and profile.copy_when_source_fits
        and profile.duration_seconds is None
        and info.audio.codec == profile.probed_codec
        and 0 < source_rate <= profile.bitrate_kbps * 1000
        and info.audio.channels <= profile.channels
    )
    return OutputPlan(
        stream_copy=copy,
        bit_rate=profile.bitrate_kbps * 1000,
        sample_rate=info.audio.sample_rate if copy else profile.sample_rate,
        channels=min(profile.channels, info.audio.channels),  # never upmix mono
    )


def _source(source: Path, info: ProbeResult, **input_options: float) -> ffmpeg.Stream:
    return _input(source, info.demuxer, info.audio.index, **input_options)


def _input(path: Path, demuxer: str, stream_index: int, **input_options: float) -> ffmpeg.Stream:
    # The demuxer is forced to what the probe found (or, for a rendition, to our own muxer's), so ffmpeg cannot
    # be talked into another.
    # One decoder thread: a worker process is sized to one core, and N workers scale to N cores.
    stream = ffmpeg.input(
        f"file:{path}",
        f=demuxer,
        protocol_whitelist="file",
        format_whitelist=",".join(ALLOWED_DEMUXERS),
        threads=1,
        **input_options,
    )
    return stream[str(stream_index)]


def _encode_options(profile: RenditionProfile, plan: OutputPlan) -> dict[str, str | int]:
    # No tags, no pictures: metadata lives in the database, not in the files we serve. The Xing/LAME
    # frame is what makes an MP3 seekable, for copies as for encodes.
    clean = {"f": profile.muxer, "map_metadata": -1, "id3v2_version": 0, "write_id3v1": 0, "write_xing": 1}
    if plan.stream_copy:
        return {**clean, "acodec": "copy"}
    return {
        **clean,
        "acodec": profile.codec,
        "audio_bitrate": f"{profile.bitrate_kbps}k",
        "ar": plan.sample_rate,
        "ac": plan.channels,
    }


def full_length_command(
    source: Path,
    info: ProbeResult,
    profiles: tuple[RenditionProfile, ...],
    targets: dict[str, Path],
    pcm_path: Path,
) -> list[str]:
    audio = _source(source, info)
    outputs = _rendition_outputs(audio, info, profiles, targets, stream_changed=False)
    # The analysis PCM: mono, and a shorter resampling filter than swr's default (16 taps, not 32): the
    # analysis reads nothing near Nyquist, and this halves the branch's cost (5 % of the whole decode).
    pcm = audio.filter("aresample", osr=PCM_SAMPLE_RATE, ochl="mono", filter_size=16, phase_shift=8)
    outputs.append(
        pcm.output(f"file:{pcm_path}", f="s16le", acodec="pcm_s16le", ac=1, ar=PCM_SAMPLE_RATE, map_metadata=-1)
    )
    # Loudness of the source itself, at its own channels and full bandwidth (ffmpeg resamples to the 48 kHz
    # the filter works at); the frames go on to a null output, which is what pulls them through the filter.
    outputs.append(audio.filter("ebur128", **EBUR128_OPTIONS).output("-", f="null"))
    return ffmpeg.merge_outputs(*outputs).global_args(*_LOUDNESS_LOG_ARGS).overwrite_output().compile()


def reencode_command(
    source: Path, info: ProbeResult, profiles: tuple[RenditionProfile, ...], targets: dict[str, Path]
) -> list[str]:
    """Full-length renditions alone, encoded from one decode: what replaces a copy when the stream changes."""
    outputs = _rendition_outputs(_source(source, info), info, profiles, targets, stream_changed=True)
    return ffmpeg.merge_outputs(*outputs).global_args(*_GLOBAL_ARGS).overwrite_output().compile()


def _rendition_outputs(
    audio: ffmpeg.Stream,
    info: ProbeResult,
    profiles: tuple[RenditionProfile, ...],
    targets: dict[str, Path],
    *,
    stream_changed: bool,
) -> list[ffmpeg.nodes.OutputStream]:
    plans = {p.name: plan_output(p, info, stream_changed=stream_changed) for p in profiles}
    return [audio.output(f"file:{targets[p.name]}", **_encode_options(p, plans[p.name])) for p in profiles]


def excerpt_source(
    renditions: list[Rendition], profiles: tuple[RenditionProfile, ...]
) -> tuple[Path, RenditionProfile] | None:
    """The encoded full-length rendition with the highest bit rate (its file and profile), to cut excerpts
    from when the source's timestamps cannot be trusted; None when there is none."""
    by_name = {p.name: p for p in profiles}
    encoded = [r for r in renditions if not r.copied and r.profile in by_name]
    if not encoded:
        return None
    best = max(encoded, key=lambda r: r.bit_rate or 0)
    return best.path, by_name[best.profile]


def excerpt_command(
    source: Path,
    info: ProbeResult,
    profile: RenditionProfile,
    start: float,
    length: float,
    target: Path,
    *,
    cut_from: tuple[Path, RenditionProfile] | None = None,
) -> list[str]:
    """A seek-and-encode of `length` s from `start`: in the source, or in `cut_from`, a full-length rendition
    of it (read back by its own muxer's demuxer), whose timeline is the decoded samples'."""
    seek = {"ss": round(start, 3), "t": round(length, 3)}
    audio = _source(source, info, **seek) if cut_from is None else _input(cut_from[0], cut_from[1].muxer, 0, **seek)
    fade = min(profile.fade_seconds, length / 4)
    if fade > 0:
        audio = audio.filter("afade", t="in", st=0, d=fade).filter("afade", t="out", st=length - fade, d=fade)
    output = audio.output(f"file:{target}", **_encode_options(profile, plan_output(profile, info)))
    return output.global_args(*_GLOBAL_ARGS).overwrite_output().compile()


class PcmFile:
    """The analysis PCM file, read a slice at a time (an `analysis.PcmReader`).

    Not a memory map: analysis samples a few hundred short blocks spread over the file, and a fault in a
    mapping brings in the whole page-cache folio around it (megabytes with large folios), which would
    count almost the whole file in the worker's RSS: 150 MB per decoded hour.
    """

    dtype = PCM_DTYPE

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size // PCM_DTYPE.itemsize

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(self.size)
        if step != 1:
            raise ValueError("PcmFile reads contiguous slices only")
        count = max(stop - start, 0)
        return np.fromfile(self.path, dtype=PCM_DTYPE, count=count, offset=start * PCM_DTYPE.itemsize)


def second_energies(pcm_path: Path, sample_rate: int) -> np.ndarray:
    """Mean square of each whole second of a mono s16le file.

    Read a minute at a time into one reused buffer: memory stays flat for a two-hour file (a memory
    map would keep every page it touched resident until unmapped).
    """
    seconds = pcm_path.stat().st_size // PCM_DTYPE.itemsize // sample_rate
    energy = np.empty(seconds, dtype=np.float64)
    block = np.empty(60 * sample_rate, dtype=PCM_DTYPE)
    with pcm_path.open("rb") as f:
        for first in range(0, seconds, 60):
            n = min(60, seconds - first)
            view = block[: n * sample_rate]
            f.readinto(memoryview(view).cast("B"))
            energy[first : first + n] = np.square(view.reshape(n, sample_rate), dtype=np.float64).mean(axis=1)
    return energy


def choose_excerpt_start(energy: np.ndarray, length: float) -> float:
    """Start (s) of the loudest `length`-second window of per-second energies, skipping the intro: a
    chorus more often than not."""
    window = int(np.ceil(length))
    if energy.size <= window:
        return 0.0
    window_energy = np.convolve(energy, np.ones(window), mode="valid")
    earliest = min(int(energy.size * 0.1), window_energy.size - 1)
    return float(earliest + int(np.argmax(window_energy[earliest:])))


def check_rendition(
    path: Path, profile: RenditionProfile, info: ProbeResult, *, expected_seconds: float, stream_changed: bool = False
) -> Rendition:
    """Reads an encoded file's MPEG headers back (mutagen: no process to start) and refuses it unless
    codec, bit rate, sample rate, channels and duration are what the plan says."""
    plan = plan_output(profile, info, stream_changed=stream_changed)
    try:
        out = mutagen.mp3.MP3(path).info
    except mutagen.MutagenError as exc:
        raise ContentError(Reason.RENDITION_INVALID, f"{profile.name} rendition is not an MP3: {exc}") from exc
    problems = []
    if out.layer != 3:
        problems.append(f"MPEG layer {out.layer}")
    if plan.stream_copy and out.bitrate > plan.bit_rate:
        problems.append(f"bit rate {out.bitrate}")
    if not plan.stream_copy and abs(out.bitrate - plan.bit_rate) > plan.bit_rate * 0.02:
        problems.append(f"bit rate {out.bitrate}")
    if out.channels != plan.channels:
        problems.append(f"{out.channels} channels")
    if out.sample_rate != plan.sample_rate:
        problems.append(f"sample rate {out.sample_rate}")
    tolerance = max(0.2, expected_seconds * 0.005)
    if abs(out.length - expected_seconds) > tolerance:
        problems.append(f"duration {out.length:.2f} s, expected {expected_seconds:.2f} s")
    if problems:
        raise ContentError(Reason.RENDITION_INVALID, f"{profile.name} rendition is wrong: " + ", ".join(problems))
    return Rendition(
        profile=profile.name,
        path=path,
        content_type=profile.content_type,
        size_bytes=path.stat().st_size,
        duration_seconds=out.length,
        codec=profile.probed_codec,
        bit_rate=out.bitrate,
        sample_rate=out.sample_rate,
        channels=out.channels,
        copied=plan.stream_copy,
    )


def _run(argv: list[str], timeout: float, cpu_seconds: int) -> str:
    """Runs ffmpeg; returns its log."""
    try:
        return run_tool(argv, timeout=timeout, cpu_seconds=cpu_seconds).stderr.decode("utf-8", "replace")
    except ToolTimeout as exc:
        raise ContentError(Reason.TIMEOUT, str(exc)) from exc
    except ToolError as exc:
        # Of a log at info level, only the lines tagged as problems say what went wrong.
        problems = [line for line in exc.stderr.splitlines() if _ERROR_LINE.search(line)]
        said = "\n".join(problems) if problems else exc.stderr
        raise ContentError(Reason.DECODE_ERROR, f"ffmpeg could not decode the audio: {said[-300:]}") from exc
