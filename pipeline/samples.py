"""Sample uploads with known answers, in every format the demo and the end-to-end tests submit."""

from pathlib import Path

from pydantic import BaseModel

from pipeline.media.runner import run_tool
from pipeline.synth import render_track, write_wav

SAMPLE_RATE = 44100


class SampleTrack(BaseModel):
    path: Path
    title: str
    artist: str
    bpm: float
    key: str  # e.g. "A minor"
    format: str


# (format, ffmpeg encoder arguments, bpm, tonic, mode). The mp3 also carries tags and a cover picture.
_CATALOG: tuple[tuple[str, tuple[str, ...], float, str, str], ...] = (
    ("mp3", ("-c:a", "libmp3lame", "-b:a", "192k"), 124.0, "A", "minor"),
    ("flac", ("-c:a", "flac", "-sample_fmt", "s32", "-ar", "96000"), 96.0, "D", "major"),
    ("wav", ("-c:a", "pcm_s16le",), 140.0, "F#", "minor"),
    ("m4a", ("-c:a", "aac", "-b:a", "160k"), 110.0, "E", "major"),
    ("ogg", ("-c:a", "libvorbis", "-q:a", "5"), 128.0, "C", "minor"),
)  # fmt: skip


def make_samples(out_dir: Path, *, seconds: float = 40.0, formats: tuple[str, ...] | None = None) -> list[SampleTrack]:
    out_dir.mkdir(parents=True, exist_ok=True)
    tracks = []
    for index, (fmt, codec_args, bpm, tonic, mode) in enumerate(_CATALOG):
        if formats is not None and fmt not in formats:
            continue
        title = f"Demo {tonic} {mode} {bpm:.0f}"
        target = out_dir / f"sample-{index + 1}.{fmt}"
        if not target.exists():
            wav = out_dir / f"sample-{index + 1}.source.wav"
            write_wav(wav, render_track(bpm, tonic, mode, seconds, SAMPLE_RATE, seed=index), SAMPLE_RATE)
            _encode(wav, target, codec_args, with_cover=fmt == "mp3")
            wav.unlink()
        tracks.append(
            SampleTrack(
                path=target,
                title=title,
                artist="Pipeline Demo Band",
                bpm=bpm,
                key=f"{tonic} {mode}",
                format=fmt,
            )
        )
    return tracks


def _encode(wav: Path, target: Path, codec_args: tuple[str, ...], *, with_cover: bool) -> None:
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav)]
    if with_cover:
        argv += ["-f", "lavfi", "-i", "color=c=teal:s=300x300:d=1", "-frames:v", "1"]
        argv += [
            "-map",
            "0:a",
            "-map",
            "1:v",
            "-c:v",
            "png",
            "-disposition:v",
            "attached_pic",
            "-id3v2_version",
            "3",
        ]
    argv += [*codec_args, "-metadata", "album=Demo Album", "-metadata", "genre=Electronic", str(target)]
    run_tool(argv, timeout=120, cpu_seconds=120)
