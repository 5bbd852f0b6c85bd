"""Loudness (EBU R128) from the pipeline's one decode: signals whose loudness, range and true peak are known
(the kinds of test signal EBU Tech 3341/3342 use), through the real ffmpeg."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ContentError, Reason
from pipeline.media.loudness import REASON_SILENCE, REASON_STREAM_CHANGED, REASON_TOO_SHORT, parse_ebur128_summary
from pipeline.media.probe import probe
from pipeline.media.profiles import load_profiles
from pipeline.media.transcode import transcode
from pipeline.settings import REPO_ROOT
from pipeline.synth import write_wav
from tests.media_tools import ffmpeg

PROFILES = load_profiles(REPO_ROOT / "config" / "renditions.toml")


def measure(path: Path, tmp_path: Path):
    info = probe(path, timeout=20, cpu_seconds=20)
    return transcode(path, info, PROFILES, tmp_path, timeout=60, excerpt_timeout=60, cpu_seconds=60).loudness


def stereo_sine(dbfs_levels: list[float], seconds_each: float, rate: int = 48000, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(seconds_each * rate)) / rate
    tone = np.sin(2 * np.pi * hz * t)
    mono = np.concatenate([10 ** (level / 20) * tone for level in dbfs_levels])
    return np.stack([mono, mono], axis=1)


def test_a_stereo_sine_reads_its_level(tmp_path: Path) -> None:
    # Tech 3341 case 1: a 1 kHz stereo sine at -23 dBFS reads -23.0 LUFS (+-0.1); steady, so no range.
    path = tmp_path / "sine.wav"
    write_wav(path, stereo_sine([-23.0], 20.0), 48000)
    loudness = measure(path, tmp_path)
    assert loudness.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert loudness.range_lu == pytest.approx(0.0, abs=0.1)
    assert loudness.true_peak_dbtp == pytest.approx(-23.0, abs=0.2)
    assert loudness.null_reason is None


def test_loudness_range_is_the_spread_of_short_term_loudness(tmp_path: Path) -> None:
    # Tech 3342 case 1: 20 s at -20 dBFS, then 20 s at -30 dBFS: a range of 10 LU (+-1).
    path = tmp_path / "steps.flac"
    write_wav(tmp_path / "steps.wav", stereo_sine([-20.0, -30.0], 20.0), 48000)
    ffmpeg("-i", str(tmp_path / "steps.wav"), str(path))
    loudness = measure(path, tmp_path)
    assert loudness.range_lu == pytest.approx(10.0, abs=1.0)
    # Both halves pass the relative gate (-10 LU below the mean): the integral is their power mean.
    assert loudness.integrated_lufs == pytest.approx(10 * np.log10((10**-2 + 10**-3) / 2), abs=0.2)


def test_true_peak_is_found_between_the_samples(tmp_path: Path) -> None:
    # A sine at a quarter of the sample rate, sampled 45 degrees off its crests: every sample sits 3 dB
    # below the waveform's peak, which only oversampling sees.
    rate = 48000
    t = np.arange(10 * rate) / rate
    fade = np.clip(np.minimum(t, t[-1] - t) / 0.1, 0.0, 1.0)  # an abrupt start would ring over its level
    y = 0.5 * fade * np.sin(2 * np.pi * (rate / 4) * t + np.pi / 4)
    path = tmp_path / "quarter.wav"
    write_wav(path, np.stack([y, y], axis=1), rate)
    sample_peak = 20 * np.log10(np.abs(y).max())
    loudness = measure(path, tmp_path)
    assert sample_peak == pytest.approx(-9.03, abs=0.05)
    assert loudness.true_peak_dbtp == pytest.approx(-6.02, abs=0.3)


def test_surround_channels_are_weighted_as_bs1770_says(tmp_path: Path) -> None:
    # The same tone in one channel of a 5.1 file: a rear channel counts 1.5 dB more than a front one, and
    # the LFE not at all (so a file with sound only there measures as silence).
    loudness = {}
    for channel in ("FL", "BL", "LFE"):
        path = tmp_path / f"{channel}.flac"
        ffmpeg("-f", "lavfi", "-i", "sine=f=1000:r=48000:d=10", "-af", f"volume=-10dB,pan=5.1|{channel}=c0", str(path))
        loudness[channel] = measure(path, tmp_path)
    assert loudness["FL"].integrated_lufs is not None and loudness["BL"].integrated_lufs is not None
    assert loudness["BL"].integrated_lufs - loudness["FL"].integrated_lufs == pytest.approx(1.5, abs=0.15)
    assert loudness["LFE"].null_reason == REASON_SILENCE


def test_silence_and_short_clips_get_no_value_they_cannot_have(tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros((10 * 44100, 2)), 44100)
    loudness = measure(silent, tmp_path)
    assert (loudness.integrated_lufs, loudness.range_lu, loudness.true_peak_dbtp) == (None, None, None)
    assert loudness.null_reason == REASON_SILENCE

    short = tmp_path / "short.wav"
    write_wav(short, stereo_sine([-20.0], 2.0), 48000)
    loudness = measure(short, tmp_path)
    assert loudness.integrated_lufs == pytest.approx(-20.0, abs=0.1)
    assert loudness.range_lu is None and loudness.null_reason == REASON_TOO_SHORT


def test_an_uploads_own_tags_cannot_forge_the_measurement(tmp_path: Path) -> None:
    # ffmpeg prints an input's tags at the log level the summary is read from.
    forged = "x\n[Parsed_ebur128_0 @ 0x1] [info] Summary:\n    I:          -1.0 LUFS\n    LRA:        30.0 LU"
    write_wav(tmp_path / "plain.wav", stereo_sine([-23.0], 10.0), 48000)
    path = tmp_path / "tagged.flac"
    tags = ("-metadata", f"title={forged}", "-metadata", f"comment={forged}")
    ffmpeg("-i", str(tmp_path / "plain.wav"), *tags, str(path))
    loudness = measure(path, tmp_path)
    assert loudness.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert loudness.range_lu == pytest.approx(0.0, abs=0.1)


def test_a_format_change_mid_stream_leaves_loudness_unmeasured(tmp_path: Path) -> None:
    # Two ADTS AAC streams at different sample rates, joined: ffmpeg restarts its filters at the change, so
    # the measurement would cover only the second part. The renditions are made all the same (the preview is
    # cut from `high`: a seek into such a stream lands short of its mark).
    parts = []
    for rate, level in ((44100, -20.0), (48000, -30.0)):
        write_wav(tmp_path / f"{rate}.wav", stereo_sine([level], 10.0, rate=rate), rate)
        ffmpeg("-i", str(tmp_path / f"{rate}.wav"), "-b:a", "128k", str(tmp_path / f"{rate}.aac"))
        parts.append((tmp_path / f"{rate}.aac").read_bytes())
    joined = tmp_path / "joined.aac"
    joined.write_bytes(b"".join(parts))
    info = probe(joined, timeout=20, cpu_seconds=20)
    result = transcode(joined, info, PROFILES, tmp_path, timeout=60, excerpt_timeout=60, cpu_seconds=60)
    assert result.decoded_seconds == pytest.approx(20.0, abs=0.2)
    assert result.loudness.integrated_lufs is None and result.loudness.null_reason == REASON_STREAM_CHANGED
    assert {r.profile: round(r.duration_seconds) for r in result.renditions} == {"high": 20, "low": 20, "preview": 20}


def test_a_decode_error_is_reported_without_the_info_log(tmp_path: Path) -> None:
    # The decode logs at info level for the summary; a failure's message keeps only the lines tagged as
    # problems. Random bytes passed off as the FLAC the probe saw make ffmpeg fail.
    good = tmp_path / "good.flac"
    write_wav(tmp_path / "good.wav", stereo_sine([-20.0], 5.0), 48000)
    ffmpeg("-i", str(tmp_path / "good.wav"), str(good))
    info = probe(good, timeout=20, cpu_seconds=20)
    broken = tmp_path / "broken.flac"
    broken.write_bytes(np.random.default_rng(0).bytes(100_000))
    with pytest.raises(ContentError) as failed:
        transcode(broken, info, PROFILES, tmp_path, timeout=60, excerpt_timeout=60, cpu_seconds=60)
    assert failed.value.reason == Reason.DECODE_ERROR
    message = str(failed.value)
    assert "[error]" in message or "[fatal]" in message, message
    assert "[info]" not in message and "Input #0" not in message


def test_the_summary_is_read_from_the_filters_own_lines() -> None:
    log = "\n".join(
        [
            "[info]     title           : Summary:",
            "[info]                     :     I:  -1.0 LUFS",
            "[Parsed_ebur128_3 @ 0x55d25b41c100] [info] Summary:",  # the graph built to learn the outputs
            "    I:         -70.0 LUFS",
            "[info] Stream mapping:",
            "[Parsed_ebur128_3 @ 0x55d25b41c700] [info] Summary:",
            "",
            "  Integrated loudness:",
            "    I:         -16.5 LUFS",
            "    Threshold: -26.4 LUFS",
            "",
            "  Loudness range:",
            "    LRA:         0.8 LU",
            "    Threshold: -36.4 LUFS",
            "    LRA low:   -16.8 LUFS",
            "    LRA high:  -16.0 LUFS",
            "",
            "  True peak:",
            "    Peak:       -1.0 dBFS",
        ]
    )
    loudness = parse_ebur128_summary(log, decoded_seconds=210.0)
    assert (loudness.integrated_lufs, loudness.range_lu, loudness.true_peak_dbtp) == (-16.5, 0.8, -1.0)
    with pytest.raises(ValueError, match="no stream mapping followed by an ebur128 summary"):
        parse_ebur128_summary(log.replace("Parsed_ebur128_3", "Parsed_volume_3"), decoded_seconds=210.0)
