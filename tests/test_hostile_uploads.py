"""Uploads from strangers: each bad input through the real worker gets the right outcome and reason,
nothing crashes, and the worker goes on with the next upload."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from mutagen.id3 import APIC, ID3, TIT2, TPE1

from pipeline.samples import SampleTrack
from pipeline.settings import Settings
from pipeline.submit import submit_file
from tests.media_tools import ffmpeg
from tests.test_pipeline_e2e import wait_finished


def lavfi(source: str, target: Path, *encode: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", source, *encode, str(target))
    return target


def mp3_sample(samples: list[SampleTrack]) -> bytes:
    return next(t for t in samples if t.format == "mp3").path.read_bytes()


def build(name: str, tmp: Path, samples: list[SampleTrack]) -> Path:
    """Writes the hostile file `name` and returns its path (named as a stranger would name it)."""
    path = tmp / f"{name}.mp3"
    match name:
        case "zero_bytes":
            path.write_bytes(b"")
        case "truncated":
            data = mp3_sample(samples)
            path.write_bytes(data[: len(data) * 3 // 10])
        case "random_bytes":
            path.write_bytes(os.urandom(200_000))
        case "text":
            path.write_text("Hello! This is my new single, please listen.\n" * 100)
        case "pdf":
            path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
        case "hls_playlist":
            path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
        case "hls_http":
            path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n")
        case "ffconcat":
            path.write_text("ffconcat version 1.0\nfile '/etc/passwd'\n")
        case "clip_0_3s":
            lavfi("sine=d=0.3", path)
        case "three_hours":  # small on disk, 3 h when decoded
            path = lavfi("anullsrc=r=8000:cl=mono", tmp / "three_hours.flac", "-t", "10800")
        case "silence_60s":
            path = lavfi("anullsrc=r=44100:cl=stereo", tmp / "silence.wav", "-t", "60")
        case "white_noise_60s":
            path = lavfi("anoisesrc=d=60:c=white:a=0.5", tmp / "noise.flac")
        case "surround_5_1":
            path = lavfi("sine=d=35", tmp / "surround.flac", "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0")
        case "mono_8khz":
            path = lavfi("sine=d=35:sample_rate=8000", tmp / "phone.wav")
        case "hires_192k_24bit":
            path = lavfi("sine=d=35:sample_rate=192000", tmp / "hires.flac", "-sample_fmt", "s32")
        case "mp4_video_with_audio":
            ffmpeg(
                "-f", "lavfi", "-i", "testsrc=d=35:s=160x120:r=10", "-f", "lavfi", "-i", "sine=d=35",
                "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(tmp / "video.mp4"),
            )  # fmt: skip
            path = tmp / "video.mp4"
        case "huge_cover":
            path.write_bytes(mp3_sample(samples))
            tags = ID3(path)
            tags.delall("APIC")
            tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=os.urandom(20 * 1024 * 1024)))
            tags.save(path)
        case "junk_tag_text":
            path.write_bytes(mp3_sample(samples))
            tags = ID3(path)
            tags.add(
                TIT2(
                    encoding=0,
                    text="\x00\x07\x1b[31mRED\x7f" + "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
                )
            )
            tags.add(TPE1(encoding=3, text="A" * 100_000))
            tags.save(path)
        case "corrupt_id3_size":
            body = mp3_sample(samples)
            # An ID3v2 header whose (syncsafe) size claims 256 MB on a 600 KB file.
            path.write_bytes(b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + body[10:])
        case "flac_named_mp3":
            path.write_bytes(next(t for t in samples if t.format == "flac").path.read_bytes())
        case _:
            raise AssertionError(name)
    return path


def no_analysis(reason: str) -> Callable[[dict[str, Any]], None]:
    def check(row: dict[str, Any]) -> None:
        meta = row["metadata"]
        assert meta["bpm"] is None and meta["key"] is None, meta
        assert meta["bpm_null_reason"] and meta["key_null_reason"]
        assert reason in (meta["bpm_null_reason"], meta["key_null_reason"]), meta
        if reason == "silence":
            assert (meta["loudness_lufs"], meta["true_peak_dbtp"], meta["loudness_null_reason"]) == (None, None, reason)
        else:  # noise is loud: it has a loudness though no tempo or key
            assert meta["loudness_lufs"] is not None and "loudness_null_reason" not in meta

    return check


def channels(source: int, renditions: int) -> Callable[[dict[str, Any]], None]:
    def check(row: dict[str, Any]) -> None:
        assert row["metadata"]["source"]["channels"] == source
        assert [r["channels"] for r in row["metadata"]["renditions"].values()] == [renditions] * 3

    return check


def no_cover(row: dict[str, Any]) -> None:
    assert row["cover_image_key"] is None


def printable_tags(row: dict[str, Any]) -> None:
    tags = row["metadata"]["tags"]
    assert all(value.isprintable() and len(value) <= 1024 for value in tags.values()), tags
    assert tags["title"].startswith("[31mRED") and "\x1b" not in tags["title"]  # control characters gone


def shorter_than_declared(row: dict[str, Any]) -> None:
    source = row["metadata"]["source"]
    assert source["declared_duration_seconds"] > source["duration_seconds"] + 5
    assert row["duration_seconds"] == round(source["duration_seconds"])


# name -> (song status, error code or None, extra check)
EXPECTED: dict[str, tuple[str, str | None, Callable[[dict[str, Any]], None] | None]] = {
    "zero_bytes": ("blocked", "not_audio", None),
    "truncated": ("ready", None, shorter_than_declared),
    "random_bytes": ("blocked", "not_audio", None),
    "text": ("blocked", "not_audio", None),
    "pdf": ("blocked", "not_audio", None),
    "hls_playlist": ("blocked", "unsupported_format", None),
    "hls_http": ("blocked", "unsupported_format", None),
    "ffconcat": ("blocked", "unsupported_format", None),
    "clip_0_3s": ("blocked", "too_short", None),
    "three_hours": ("blocked", "too_long", None),
    "silence_60s": ("ready", None, no_analysis("silence")),
    "white_noise_60s": ("ready", None, no_analysis("no_tonal_content")),
    "surround_5_1": ("ready", None, channels(6, 2)),
    "mono_8khz": ("ready", None, channels(1, 1)),
    "hires_192k_24bit": ("ready", None, None),
    "mp4_video_with_audio": ("ready", None, None),
    "huge_cover": ("ready", None, no_cover),
    "junk_tag_text": ("ready", None, printable_tags),
    # The tag claims to swallow the whole file, so no demuxer finds audio after it.
    "corrupt_id3_size": ("blocked", "not_audio", None),
    "flac_named_mp3": ("ready", None, None),
}


def test_every_hostile_upload_gets_its_outcome_and_the_worker_goes_on(
    settings: Settings, worker, samples: list[SampleTrack], tmp_path: Path
) -> None:
    sent = {name: submit_file(settings, build(name, tmp_path, samples)) for name in EXPECTED}
    good = submit_file(settings, samples[0].path)  # after all of them: the worker must still be fine
    rows = wait_finished(settings, [s.upload_id for s in sent.values()] + [good.upload_id], timeout=300)

    cache = redis.Redis.from_url(settings.redis_url)
    outcomes = {}
    for name, (status, code, check) in EXPECTED.items():
        row = rows[sent[name].upload_id]
        outcomes[name] = (row["song_status"], row["error_code"], row["error_message"])
        if row["song_status"] != status or row["error_code"] != code:
            continue  # reported all at once below
        if code:
            assert row["error_message"] and row["upload_status"] == status, name
            assert str(settings.work_dir) not in row["error_message"]
            assert row["storage_keys"] is None
        else:
            assert set(row["storage_keys"]) == {"high", "low", "preview"}, name
        if check:
            check(row)
        assert cache.exists(f"song:{row['song_id']}") == 0
    wrong = {n: o for n, o in outcomes.items() if (o[0], o[1]) != EXPECTED[n][:2]}
    assert not wrong, wrong
    assert rows[good.upload_id]["song_status"] == "ready"


@pytest.mark.parametrize("name", ["surround_5_1", "mono_8khz"])
def test_channel_layouts_are_mixed_down_not_up(name: str, settings: Settings, samples, tmp_path: Path) -> None:
    from pipeline.media.probe import probe
    from pipeline.media.profiles import load_profiles
    from pipeline.media.transcode import transcode

    source = build(name, tmp_path, samples)
    info = probe(source, timeout=30, cpu_seconds=30)
    profiles = load_profiles(settings.renditions_file)
    result = transcode(source, info, profiles, tmp_path, timeout=60, excerpt_timeout=60, cpu_seconds=60)
    assert {r.channels for r in result.renditions} == ({2} if name == "surround_5_1" else {1})
