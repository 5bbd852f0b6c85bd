"""Probing, transcoding and checking renditions on local files alone (no database, S3 or Celery)."""

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ContentError, Outcome, Reason
from pipeline.media.loudness import REASON_STREAM_CHANGED
from pipeline.media.probe import probe
from pipeline.media.profiles import RenditionProfile, load_profiles
from pipeline.media.runner import ToolTimeout, run_tool
from pipeline.media.transcode import (
    PCM_DTYPE,
    PCM_SAMPLE_RATE,
    Rendition,
    check_rendition,
    choose_excerpt_start,
    excerpt_command,
    excerpt_source,
    plan_output,
    second_energies,
    transcode,
)
from pipeline.samples import SampleTrack
from pipeline.settings import REPO_ROOT
from tests.media_tools import ffmpeg, ffprobe_json, joined_stream, tone_changes_at

PROFILES = load_profiles(REPO_ROOT / "config" / "renditions.toml")


def sine(path: Path, seconds: float, *extra: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *extra, str(path))
    return path


def probe_file(path: Path):
    return probe(path, timeout=20, cpu_seconds=20)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "wav", "m4a", "ogg"])
def test_probe_reads_each_accepted_format(samples: list[SampleTrack], fmt: str) -> None:
    track = next(t for t in samples if t.format == fmt)
    info = probe_file(track.path)
    assert info.audio.channels == 2
    assert info.duration_seconds == pytest.approx(40.0, abs=0.1)
    assert info.tags.get("album") == "Demo Album"
    assert info.tags.get("genre") == "Electronic"
    source = info.source_metadata(decoded_seconds=info.duration_seconds)
    assert source["duration_seconds"] == pytest.approx(40.0, abs=0.1)
    assert "declared_duration_seconds" not in source
    assert info.source_metadata(decoded_seconds=12.0)["declared_duration_seconds"] == pytest.approx(40.0, abs=0.1)
    assert source["sample_rate"] in (44100, 96000)


def test_probe_finds_cover_and_high_resolution(samples: list[SampleTrack]) -> None:
    mp3 = probe_file(next(t for t in samples if t.format == "mp3").path)
    assert mp3.cover_codec == "png" and mp3.cover_stream_index is not None
    flac = probe_file(next(t for t in samples if t.format == "flac").path)
    assert flac.audio.sample_rate == 96000 and flac.audio.bits_per_sample == 24


def test_probe_refuses_text_and_empty_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp3"
    text.write_text("these are not the droids you are looking for\n" * 50)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    for path in (text, empty):
        with pytest.raises(ContentError) as caught:
            probe_file(path)
        assert caught.value.reason == Reason.NOT_AUDIO
        assert caught.value.outcome == Outcome.BLOCKED


@pytest.fixture
def request_log() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request made to it."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def hostile_files(tmp_path: Path, target: str) -> list[Path]:
    hls = tmp_path / "playlist.mp3"
    hls.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n")
    concat = tmp_path / "concat.mp3"
    concat.write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    return [hls, concat]


def test_playlists_and_concat_files_never_reach_the_network(tmp_path: Path, request_log) -> None:
    base_url, seen = request_log
    for path in hostile_files(tmp_path, f"{base_url}/segment.ts"):
        with pytest.raises(ContentError) as caught:
            probe_file(path)
        assert caught.value.outcome == Outcome.BLOCKED
        assert caught.value.reason in (Reason.UNSUPPORTED_FORMAT, Reason.NOT_AUDIO)
    assert seen == []


def test_playlists_and_concat_files_never_read_other_local_files(tmp_path: Path) -> None:
    secret = sine(tmp_path / "secret.wav", 2)
    # With atime older than mtime, any read updates atime (relatime); the control read proves it.
    os.utime(secret, (0, os.stat(secret).st_mtime))
    for path in hostile_files(tmp_path, f"file:{secret}"):
        with pytest.raises(ContentError):
            probe_file(path)
    assert os.stat(secret).st_atime == 0
    subprocess.run(["ffprobe", "-v", "quiet", str(secret)], check=True)
    assert os.stat(secret).st_atime > 0, "control: this file system does not record reads"


def test_probe_refuses_video_only_files(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=2:size=64x64:rate=10", "-c:v", "mpeg4", str(video))
    with pytest.raises(ContentError) as caught:
        probe_file(video)
    assert caught.value.reason == Reason.NOT_AUDIO


def test_transcode_writes_every_rendition_as_its_profile_says(samples: list[SampleTrack], tmp_path: Path) -> None:
    source = next(t for t in samples if t.format == "flac").path
    info = probe_file(source)
    result = transcode(source, info, PROFILES, tmp_path, timeout=120, excerpt_timeout=60, cpu_seconds=120)
    by_name = {r.profile: r for r in result.renditions}
    assert set(by_name) == {"high", "low", "preview"}
    expected = {
        "high": (320_000, 40.0, 44100),
        "low": (64_000, 40.0, 22050),
        "preview": (128_000, 30.0, 44100),
    }
    for name, (bit_rate, seconds, rate) in expected.items():
        probed = ffprobe_json(by_name[name].path)
        stream = probed["streams"][0]
        assert len(probed["streams"]) == 1  # no cover picture carried over
        assert stream["codec_name"] == "mp3"
        assert int(stream["bit_rate"]) == bit_rate
        assert int(stream["sample_rate"]) == rate
        assert float(probed["format"]["duration"]) == pytest.approx(seconds, abs=0.15)
        assert "tags" not in probed["format"] or not set(probed["format"]["tags"]) - {"encoder"}
    pcm = np.fromfile(result.pcm_path, dtype=PCM_DTYPE)
    assert pcm.size / PCM_SAMPLE_RATE == pytest.approx(40.0, abs=0.05) == result.decoded_seconds
    assert np.abs(pcm).max() > 10000  # real audio, not silence


def test_mono_source_is_not_upmixed(tmp_path: Path) -> None:
    source = sine(tmp_path / "mono.wav", 3, "-ac", "1")
    result = transcode(source, probe_file(source), PROFILES, tmp_path, timeout=60, excerpt_timeout=60, cpu_seconds=60)
    assert {r.channels for r in result.renditions} == {1}
    preview = next(r for r in result.renditions if r.profile == "preview")
    assert preview.duration_seconds == pytest.approx(3.0, abs=0.1)  # short track: the whole of it


def test_excerpt_starts_at_the_loudest_part_after_the_intro(tmp_path: Path) -> None:
    rate = 1000
    quiet, loud = np.full(rate * 60, 100, dtype=PCM_DTYPE), np.full(rate * 40, 20000, dtype=PCM_DTYPE)
    path = tmp_path / "pcm.s16le"

    def start(pcm: np.ndarray) -> float:
        pcm.tofile(path)
        return choose_excerpt_start(second_energies(path, rate), 30)

    assert start(np.concatenate([quiet, loud, quiet])) == pytest.approx(60, abs=1)  # loud from 60 s to 100 s
    # A loud start is skipped past the first 10 %, but the window still overlaps as much as it can.
    assert start(np.concatenate([loud, quiet, quiet])) == pytest.approx(16, abs=1)
    assert start(np.zeros(rate * 20, dtype=PCM_DTYPE)) == 0.0


def test_second_energies_reads_blocks_of_a_long_file(tmp_path: Path) -> None:
    rate = 100
    # 150.5 s: two full one-minute reads, a partial one, and a trailing half second that is left out.
    pcm = (np.arange(150 * rate + rate // 2) % 1000).astype(PCM_DTYPE)
    pcm.tofile(tmp_path / "pcm.s16le")
    expected = np.square(pcm[: 150 * rate].astype(np.float64)).reshape(150, rate).mean(axis=1)
    np.testing.assert_allclose(second_energies(tmp_path / "pcm.s16le", rate), expected)


def test_check_rendition_refuses_a_wrong_bit_rate(tmp_path: Path) -> None:
    wrong = sine(tmp_path / "wrong.mp3", 5, "-c:a", "libmp3lame", "-b:a", "96k")
    high = RenditionProfile(name="high", codec="libmp3lame", bitrate_kbps=320, sample_rate=44100, channels=1)
    with pytest.raises(ContentError) as caught:
        check_rendition(wrong, high, probe_file(wrong), expected_seconds=5.0)
    assert caught.value.reason == Reason.RENDITION_INVALID
    assert "bit rate" in caught.value.message


def test_runner_kills_the_whole_process_group_on_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {marker}; wait"
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        run_tool(["sh", "-c", script], timeout=1, cpu_seconds=10)
    assert time.monotonic() - started < 5
    child = int(marker.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_runner_enforces_the_cpu_limit() -> None:
    with pytest.raises(ToolTimeout):
        run_tool(["sh", "-c", "while :; do :; done"], timeout=30, cpu_seconds=1)


def test_a_tool_dies_with_the_worker_that_ran_it(tmp_path: Path) -> None:
    marker = tmp_path / "tool.pid"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pipeline.media.runner import run_tool; import sys;"
            f"run_tool(['sh', '-c', 'echo $$ > {marker}; exec sleep 60'], timeout=60, cpu_seconds=60)",
        ]
    )
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    tool = int(marker.read_text())
    assert Path(f"/proc/{tool}").exists()
    worker.kill()  # SIGKILL: no finally block runs in the worker
    worker.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{tool}").exists() and "Z" not in Path(f"/proc/{tool}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the tool outlived its worker"
        time.sleep(0.05)


def test_an_mp3_upload_within_the_bit_rate_is_copied_clean_and_seekable(
    samples: list[SampleTrack], tmp_path: Path
) -> None:
    source = next(t for t in samples if t.format == "mp3").path  # 192 kbps, tags and a cover picture
    info = probe_file(source)
    result = transcode(source, info, PROFILES, tmp_path, timeout=120, excerpt_timeout=60, cpu_seconds=120)
    by_name = {r.profile: r for r in result.renditions}
    assert by_name["high"].copied and not by_name["low"].copied and not by_name["preview"].copied
    assert by_name["high"].bit_rate == 192_000 and not result.stream_changed
    probed = ffprobe_json(by_name["high"].path)
    assert [s["codec_type"] for s in probed["streams"]] == ["audio"]  # the cover picture is gone
    assert not set(probed["format"].get("tags", {})) - {"encoder"}
    head = by_name["high"].path.read_bytes()[:4096]
    assert head[:3] != b"ID3" and (b"Info" in head or b"Xing" in head)  # no tag, seek header present
    assert float(probed["format"]["duration"]) == pytest.approx(40.0, abs=0.1)


MP3_128K = ("-c:a", "libmp3lame", "-b:a", "128k")  # within `high`'s bit rate: copied, were it not for the join
AAC_128K = ("-c:a", "aac", "-b:a", "128k")  # .aac: ADTS


@pytest.mark.parametrize(
    ("name", "rates", "codec_args"),
    [
        ("joined.mp3", (44100, 32000), MP3_128K),
        ("joined.mp3", (44100, 48000), MP3_128K),
        ("joined.aac", (44100, 48000), AAC_128K),
    ],
)
def test_a_stream_that_changes_sample_rate_mid_way_makes_good_renditions(
    tmp_path: Path, name: str, rates: tuple[int, int], codec_args: tuple[str, ...]
) -> None:
    # 20 s of a quiet 440 Hz tone, then 25 s of a loud 880 Hz one at another rate: the preview's window
    # (the loudest 30 s) spans the join, which shows where in the audio the preview was cut.
    parts = [(rates[0], 20.0, 440.0, 0.2), (rates[1], 25.0, 880.0, 1.0)]
    source = joined_stream(tmp_path / name, parts, codec_args)
    out = tmp_path / "out"
    out.mkdir()
    result = transcode(source, probe_file(source), PROFILES, out, timeout=60, excerpt_timeout=60, cpu_seconds=60)
    assert result.stream_changed and result.loudness.null_reason == REASON_STREAM_CHANGED
    assert result.decoded_seconds == pytest.approx(45.0, abs=0.1)
    by_name = {r.profile: r for r in result.renditions}
    assert not any(r.copied for r in result.renditions)  # an MP3 source's `high` is encoded, never copied
    expected = {"high": (320_000, 45.0, 44100), "low": (64_000, 45.0, 22050), "preview": (128_000, 30.0, 44100)}
    for profile, (bit_rate, seconds, rate) in expected.items():
        rendition = by_name[profile]
        assert (rendition.bit_rate, rendition.sample_rate, rendition.channels) == (bit_rate, rate, 2), profile
        assert rendition.duration_seconds == pytest.approx(seconds, abs=0.15), profile
        probed = ffprobe_json(rendition.path)["streams"][0]
        assert int(probed["sample_rate"]) == rate and float(probed["duration"]) == pytest.approx(seconds, abs=0.15)
    # The preview starts where the analysis PCM says it does: the join is 20 s into the decoded audio.
    preview = by_name["preview"]
    assert 10 <= preview.start_seconds <= 19
    assert tone_changes_at(preview.path, 660.0) == pytest.approx(20.0 - preview.start_seconds, abs=0.1)
    assert tone_changes_at(by_name["high"].path, 660.0) == pytest.approx(20.0, abs=0.1)


def test_mp3s_joined_at_the_same_parameters_are_still_copied(tmp_path: Path) -> None:
    # A join as such changes nothing ffmpeg's filters see: only a change of rate, channels or sample format does.
    source = joined_stream(tmp_path / "same.mp3", [(44100, 10.0, 440.0, 0.5), (44100, 10.0, 880.0, 0.5)], MP3_128K)
    result = transcode(source, probe_file(source), PROFILES, tmp_path, timeout=60, excerpt_timeout=60, cpu_seconds=60)
    by_name = {r.profile: r for r in result.renditions}
    assert not result.stream_changed and result.loudness.integrated_lufs is not None
    assert by_name["high"].copied and by_name["high"].duration_seconds == pytest.approx(20.0, abs=0.15)


def test_a_changing_stream_is_planned_without_copies_and_cut_from_its_best_encoded_rendition(tmp_path: Path) -> None:
    source = sine(tmp_path / "plain.mp3", 5, "-c:a", "libmp3lame", "-b:a", "128k")
    info = probe_file(source)
    high, low, preview = (next(p for p in PROFILES.profiles if p.name == name) for name in ("high", "low", "preview"))
    assert plan_output(high, info).stream_copy
    changed = plan_output(high, info, stream_changed=True)
    assert not changed.stream_copy and (changed.bit_rate, changed.sample_rate) == (320_000, 44100)

    def made(profile: str, bit_rate: int, copied: bool) -> Rendition:
        return Rendition(profile=profile, path=tmp_path / f"{profile}.mp3", content_type="audio/mpeg", size_bytes=1,
                         duration_seconds=5.0, codec="mp3", bit_rate=bit_rate, sample_rate=44100, channels=1,
                         copied=copied)  # fmt: skip

    full_length = (high, low)
    assert excerpt_source([made("high", 320_000, False), made("low", 64_000, False)], full_length) == (
        tmp_path / "high.mp3",
        high,
    )
    assert excerpt_source([made("high", 128_000, True), made("low", 64_000, False)], full_length) == (
        tmp_path / "low.mp3",
        low,
    )
    assert excerpt_source([], full_length) is None
    argv = excerpt_command(source, info, preview, 1.0, 3.0, tmp_path / "p.mp3", cut_from=(tmp_path / "high.mp3", high))
    assert argv[argv.index("-i") + 1] == f"file:{tmp_path / 'high.mp3'}" and f"file:{source}" not in argv
    # Read by its own muxer's demuxer, its only stream.
    assert argv[argv.index("-f") + 1] == "mp3" and argv[argv.index("-filter_complex") + 1].startswith("[0:0]")
