"""What an uploaded file is: ffprobe for the streams, mutagen for the tags, ffmpeg for cover art."""

import json
import logging
from pathlib import Path
from typing import Any

import mutagen
from pydantic import BaseModel, ConfigDict

from pipeline.errors import ContentError, Reason
from pipeline.media.runner import ToolError, ToolTimeout, run_tool

log = logging.getLogger(__name__)

# Demuxers an upload may use. Everything else (hls, concat, image sequences, ...) is refused
# before it opens anything, which is what keeps playlists and concat files from reading
# other files or the network.
ALLOWED_DEMUXERS = ("mp3", "flac", "wav", "w64", "ogg", "mov", "aiff", "matroska", "aac")

_MAX_TAGS = 64
_MAX_TAG_CHARS = 1024
_COVER_CODECS = {"mjpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png")}


class AudioStream(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None
    bits_per_sample: int | None


class ProbeResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    demuxer: str  # the name ffmpeg is forced to use when it reads this file again
    format_name: str
    duration_seconds: float
    bit_rate: int | None
    size_bytes: int
    audio: AudioStream
    stream_count: int
    cover_stream_index: int | None
    cover_codec: str | None
    tags: dict[str, str]

    def source_metadata(self, decoded_seconds: float) -> dict[str, Any]:
        """The `songs.metadata.source` entry; the duration is what actually decoded."""
        source = {
            "format": self.format_name,
            "codec": self.audio.codec,
            "duration_seconds": round(decoded_seconds, 3),
            "sample_rate": self.audio.sample_rate,
            "channels": self.audio.channels,
            "bit_rate": self.audio.bit_rate or self.bit_rate,
            "bits_per_sample": self.audio.bits_per_sample,
            "size_bytes": self.size_bytes,
        }
        if abs(self.duration_seconds - decoded_seconds) > 1.0:  # truncated, or a lying header
            source["declared_duration_seconds"] = round(self.duration_seconds, 3)
        return source


def input_guard_args() -> list[str]:
    """ffmpeg/ffprobe input options that confine a tool to the local file it is given."""
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(ALLOWED_DEMUXERS)]


def probe(path: Path, *, timeout: float, cpu_seconds: int) -> ProbeResult:
    """Describes the file at `path`, or raises ContentError when it is not usable audio."""
    size = path.stat().st_size
    if size == 0:
        raise ContentError(Reason.NOT_AUDIO, "the file is empty")
    raw = _ffprobe(path, timeout=timeout, cpu_seconds=cpu_seconds)
    streams = raw.get("streams", [])
    fmt = raw.get("format", {})
    audio = _best_audio_stream(streams)
    if audio is None:
        raise ContentError(Reason.NOT_AUDIO, "the file has no audio stream")
    duration = _duration(fmt, audio)
    if duration is None:
        raise ContentError(Reason.UNREADABLE, "the file's duration cannot be determined")
    cover = next((s for s in streams if s.get("disposition", {}).get("attached_pic") == 1), None)
    format_name = str(fmt.get("format_name", ""))
    return ProbeResult(
        demuxer=_demuxer_for(format_name),
        format_name=format_name,
        duration_seconds=duration,
        bit_rate=_int(fmt.get("bit_rate")),
        size_bytes=size,
        audio=AudioStream(
            index=int(audio["index"]),
            codec=str(audio.get("codec_name", "unknown")),
            sample_rate=_int(audio.get("sample_rate")) or 0,
            channels=_int(audio.get("channels")) or 0,
            bit_rate=_int(audio.get("bit_rate")),
            bits_per_sample=_int(audio.get("bits_per_raw_sample")) or _int(audio.get("bits_per_sample")) or None,
        ),
        stream_count=len(streams),
        cover_stream_index=int(cover["index"]) if cover and cover.get("codec_name") in _COVER_CODECS else None,
        cover_codec=cover.get("codec_name") if cover else None,
        tags=read_tags(path) or _bounded_tags(fmt.get("tags", {})),
    )


def _ffprobe(path: Path, *, timeout: float, cpu_seconds: int) -> dict[str, Any]:
    argv = [
        "ffprobe", "-v", "error", "-hide_banner",
        *input_guard_args(),
        "-print_format", "json", "-show_format", "-show_streams",
        "-i", f"file:{path}",
    ]  # fmt: skip
    try:
        out = run_tool(argv, timeout=timeout, cpu_seconds=cpu_seconds).stdout
    except ToolTimeout as exc:
        raise ContentError(Reason.TIMEOUT, f"probing took too long: {exc}") from exc
    except ToolError as exc:
        if "not on whitelist" in exc.stderr:
            raise ContentError(Reason.UNSUPPORTED_FORMAT, "the container format is not accepted") from exc
        detail = _last_line(exc.stderr).replace(f"file:{path}", "the file")  # no scratch paths in messages
        raise ContentError(Reason.NOT_AUDIO, f"not a readable audio file ({detail})") from exc
    return json.loads(out or b"{}")


def _best_audio_stream(streams: list[dict[str, Any]]) -> dict[str, Any] | None:
    audio = [s for s in streams if s.get("codec_type") == "audio" and _int(s.get("sample_rate"))]
    if not audio:
        return None
    # The default-flagged stream first, then the one with the most channels.
    return max(audio, key=lambda s: (s.get("disposition", {}).get("default", 0), _int(s.get("channels")) or 0))


def _duration(fmt: dict[str, Any], stream: dict[str, Any]) -> float | None:
    for value in (stream.get("duration"), fmt.get("duration")):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if seconds > 0:
            return seconds
    return None


def _demuxer_for(format_name: str) -> str:
    # ffprobe reports aliases ("mov,mp4,m4a,3gp,3g2,mj2"); any listed alias names the demuxer.
    for name in format_name.split(","):
        if name in ALLOWED_DEMUXERS:
            return name
    raise ContentError(Reason.UNSUPPORTED_FORMAT, f"container {format_name!r} is not accepted")


def read_tags(path: Path) -> dict[str, str]:
    """Text tags through mutagen's format-neutral 'easy' view; {} when it cannot parse them."""
    try:
        parsed = mutagen.File(path, easy=True)
    except Exception as exc:  # mutagen raises many types on corrupt headers; tags are optional
        log.warning("tags unreadable in %s: %s", path.name, exc)
        return {}
    if parsed is None or parsed.tags is None:
        return {}
    # Multi-valued frames join with ", "; empty values (e.g. from NUL separators) are dropped.
    return _bounded_tags(
        {key: ", ".join(v for v in map(str, values) if v.strip()) for key, values in parsed.tags.items()}
    )


def _bounded_tags(tags: dict[str, Any]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in list(tags.items())[:_MAX_TAGS]:
        text = "".join(ch for ch in str(value) if ch.isprintable()).strip()[:_MAX_TAG_CHARS]
        if text:
            clean[str(key).lower()[:64]] = text
    return clean


def extract_cover(
    source: Path, info: ProbeResult, out_dir: Path, *, timeout: float, max_bytes: int
) -> tuple[Path, str] | None:
    """Copies the embedded cover picture out as a file; returns (path, content type), or None when
    there is none, it is broken, or it is larger than max_bytes."""
    if info.cover_stream_index is None or info.cover_codec is None:
        return None
    extension, content_type = _COVER_CODECS[info.cover_codec]
    target = out_dir / f"cover.{extension}"
    argv = [
        "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y",
        *input_guard_args(), "-f", info.demuxer, "-i", f"file:{source}",
        "-map", f"0:{info.cover_stream_index}", "-c", "copy", "-frames:v", "1",
        "-f", "image2", f"file:{target}",
    ]  # fmt: skip
    try:
        run_tool(argv, timeout=timeout, cpu_seconds=int(timeout))
    except (ToolError, ToolTimeout) as exc:
        log.warning("cover art not extracted: %s", exc)  # a broken picture must not sink the song
        return None
    size = target.stat().st_size if target.exists() else 0
    if not 0 < size <= max_bytes:
        log.warning("cover art ignored: %d bytes (limit %d)", size, max_bytes)
        return None
    return target, content_type


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no detail"
