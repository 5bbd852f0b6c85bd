"""ffmpeg and ffprobe as the tests use them: to make input files and to inspect outputs."""

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def ffprobe_json(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(out)


def joined_stream(path: Path, parts: list[tuple[int, float, float, float]], codec_args: tuple[str, ...]) -> Path:
    """Stereo tones encoded one by one and joined byte-wise, as a naive concatenation of files does (the
    second part's tags and header frames included); each part is (sample rate, seconds, Hz, gain)."""
    data = []
    for i, (rate, seconds, hz, gain) in enumerate(parts):
        part = path.with_name(f"{path.stem}-part{i}{path.suffix}")
        ffmpeg("-f", "lavfi", "-i", f"sine=f={hz}:r={rate}:d={seconds}", "-af", f"volume={gain}", "-ac", "2",
               *codec_args, str(part))  # fmt: skip
        data.append(part.read_bytes())
    path.write_bytes(b"".join(data))
    return path


def tone_changes_at(path: Path, threshold_hz: float, rate: int = 8000) -> float | None:
    """When (s) a decoded file's dominant frequency first rises above threshold_hz, in 50 ms windows."""
    pcm = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "quiet", "-i", str(path), "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
        check=True,
        capture_output=True,
    ).stdout
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    window = rate // 20
    for first in range(0, samples.size - window + 1, window):
        spectrum = np.abs(np.fft.rfft(samples[first : first + window]))
        if spectrum.max() > 0 and np.argmax(spectrum) * rate / window > threshold_hz:
            return first / rate
    return None
