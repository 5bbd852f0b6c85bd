"""Benchmark material for `pipeline.analysis`: songs with a known tempo and key, and inputs with no answer.

Songs are written as General MIDI (a small dependency-free writer below), rendered with the FluidSynth CLI
and the FluidR3 GM soundfont (sampled instruments and drum kits), levelled, encoded with ffmpeg
(wav/mp3/aac/ogg at several bit rates) and decoded to mono 16-bit 22050 Hz PCM exactly as the pipeline
decodes uploads. Everything is drawn from a seeded RNG and cached under the cache directory, so a rerun
reads the PCM files back in a second.

What makes the set hard:

- tempo 60-200 BPM with extra weight on the octave-ambiguous zones 70-90 and 160-180; half-time feels
  (kick on 1, snare on 3, sixteenth hats: the annotated tempo is the notated one, as dance-music
  catalogues annotate it), swing (triplet-ish eighths), four-on-the-floor, breakbeats and ballads;
- all 24 keys; minor songs are Aeolian (i-VI-III-VII loops, whose notes are the relative major's),
  Dorian (raised sixth: the notes of the major key a tone below) or harmonic minor; major songs include
  vi-IV-I-V loops that start on the relative minor;
- tuning offsets up to +-30 cents (pitch bend on every melodic channel), sampled instruments from
  pianos to saxophones, seven drum kits, loud or quiet drums, intros without drums, reverb on or off;
- loudness from -26 dB to a clipped "loudness war" master, and lossy codecs down to 64 kb/s mp3.

Null cases: digital silence, dither-level noise, white/pink/brown noise, real synthetic speech
(espeak-ng) and a formant speech imitation, and clips shorter than 3 s; plus drum-only tracks (a tempo,
no key) and beatless pads (a key, no tempo).

The tools are Debian packages (`fluidsynth`, `fluid-soundfont-gm`, `espeak-ng`, `ffmpeg`):
`ensure_tools()` installs the missing ones with apt-get when run as root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from pipeline.synth import speech_like

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEBIAN_PACKAGES = {"fluidsynth": "fluidsynth", "espeak-ng": "espeak-ng", "ffmpeg": "ffmpeg"}
GENERATOR_VERSION = 2  # part of the cache path: bump when the generated audio changes
SR = 22050  # what the pipeline decodes for analysis
RENDER_SR = 44100
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Scales (semitones from the tonic) and chord loops (0-based scale degrees, one chord per bar or two).
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "harmonic": (0, 2, 3, 5, 7, 8, 11),
}
LOOPS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 0, 4), (0, 3, 4, 3), (0, 1, 3, 4)),
    "aeolian": ((0, 5, 2, 6), (0, 6, 5, 6), (0, 3, 6, 2), (5, 6, 0, 0), (0, 5, 3, 4)),
    "dorian": ((0, 3), (0, 3, 0, 6), (0, 6, 3, 0), (0, 1, 0, 3)),
    "harmonic": ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 4)),
}
# General MIDI programs (0-based) per role.
BASSES = (32, 33, 34, 35, 36, 38, 39)
CHORDS = (0, 2, 4, 5, 11, 16, 18, 24, 25, 27, 29, 46, 48, 50, 61, 88, 89, 90)
LEADS = (0, 11, 13, 22, 26, 40, 52, 56, 65, 66, 68, 71, 73, 80, 81)
PADS = (48, 49, 50, 52, 88, 89, 91, 94)
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)  # bank 128: standard, room, power, electronic, 808, jazz, brush
KICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 39, 42, 44, 46, 49, 51
CODECS = (
    ("wav", ()),
    ("mp3", ("-c:a", "libmp3lame", "-b:a", "320k")),
    ("mp3", ("-c:a", "libmp3lame", "-b:a", "128k")),
    ("mp3", ("-c:a", "libmp3lame", "-b:a", "64k")),
    ("m4a", ("-c:a", "aac", "-b:a", "192k")),
    ("m4a", ("-c:a", "aac", "-b:a", "96k")),
    ("ogg", ("-c:a", "libvorbis", "-q:a", "5")),
    ("ogg", ("-c:a", "libvorbis", "-q:a", "1")),
)
SPEECH_TEXT = (
    "The quarterly figures were discussed at length during the meeting on Tuesday afternoon. "
    "Several members asked whether the new schedule would affect the delivery of the spring catalogue, "
    "and the chair promised a written answer before the end of the month. After a short break the "
    "committee turned to the budget, the staffing plan and the renovation of the north building."
)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # music | drums_only | pad_only | silence | noise | speech | short
    bpm: float | None  # None: no tempo should be reported
    tonic: str | None  # None: no key should be reported
    mode: str | None  # "major" | "minor"
    seconds: float
    seed: int
    scale: str = "major"  # major | aeolian | dorian | harmonic
    feel: str = "rock"
    tuning_cents: float = 0.0
    codec: int = 0  # index into CODECS
    gain_db: float = 0.0  # > 0: pushed into a clipper
    details: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str | None:
        return f"{self.tonic} {self.mode}" if self.tonic else None

    @property
    def codec_name(self) -> str:
        ext, args = CODECS[self.codec]
        return ext if not args else f"{ext}-{args[-1]}"


# --- tools -------------------------------------------------------------------------------------------


def ensure_tools() -> None:
    """Install fluidsynth, the GM soundfont, espeak-ng and ffmpeg from Debian when any is missing."""
    missing = [pkg for exe, pkg in DEBIAN_PACKAGES.items() if shutil.which(exe) is None]
    if not SOUNDFONT.exists():
        missing.append("fluid-soundfont-gm")
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing Debian packages {missing}: run `sudo apt-get install {' '.join(missing)}`")
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def _ffmpeg(*args: str) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]


# --- a minimal Standard MIDI File writer -------------------------------------------------------------


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: list[tuple[int, int, bytes]], ticks_per_beat: int) -> None:
    """Format-0 SMF from (tick, order, message) events; `order` sorts events sharing a tick (offs first)."""
    track = bytearray()
    last = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track += _vlq(tick - last) + msg
        last = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += ticks_per_beat.to_bytes(2, "big")
    path.write_bytes(header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track))


class _Song:
    """Collects MIDI events in beats; swing and human timing are applied when a note is placed."""

    TPB = 480

    def __init__(self, rng: np.random.Generator, swing: float) -> None:
        self.rng, self.swing, self.events = rng, swing, []

    def tick(self, beat: float, jitter: float) -> int:
        whole, frac = divmod(beat, 1.0)
        if self.swing and abs(frac - 0.5) < 1e-6:
            frac = self.swing
        return max(0, round((whole + frac) * self.TPB + self.rng.normal(0, jitter)))

    def note(self, ch: int, pitch: int, beat: float, length: float, vel: int, jitter: float = 6.0) -> None:
        on = self.tick(beat, jitter)
        off = max(on + 10, on + round(length * self.TPB) - 5)
        vel = int(np.clip(vel + self.rng.integers(-6, 7), 1, 127))
        self.events.append((on, 1, bytes([0x90 | ch, pitch, vel])))
        self.events.append((off, 0, bytes([0x80 | ch, pitch, 0])))

    def control(self, ch: int, cc: int, value: int) -> None:
        self.events.append((0, -1, bytes([0xB0 | ch, cc, value])))

    def program(self, ch: int, program: int) -> None:
        self.events.append((0, -1, bytes([0xC0 | ch, program])))


# --- songs -------------------------------------------------------------------------------------------


def _compose(case: Case, path: Path) -> None:
    rng = np.random.default_rng(case.seed)
    d = case.details
    swing = float(d.get("swing", 0.0))
    song = _Song(rng, swing)
    tempo_us = round(60_000_000 / case.bpm) if case.bpm else 500_000
    song.events.append((0, -2, b"\xff\x51\x03" + tempo_us.to_bytes(3, "big")))
    tonic_pc = NOTE_NAMES.index(case.tonic) if case.tonic else int(rng.integers(12))
    scale = [(tonic_pc + s) % 12 for s in SCALES[case.scale]]
    bend = 8192 + round(case.tuning_cents / 200 * 8192)  # default bend range: +-2 semitones
    BASS, CHORD, LEAD = 0, 1, 2
    for ch, prog, vol in ((BASS, d["bass"], d["bass_vol"]), (CHORD, d["chords"], d["chord_vol"]),
                          (LEAD, d["lead"], d["lead_vol"])):  # fmt: skip
        song.program(ch, int(prog))
        song.control(ch, 7, int(vol))
        song.control(ch, 10, int(rng.integers(40, 90)))
        song.control(ch, 91, int(d["reverb"]))
        song.events.append((0, -1, bytes([0xE0 | ch, bend & 0x7F, bend >> 7])))
    song.program(9, int(d["kit"]))
    song.control(9, 7, int(d["drum_vol"]))
    song.control(9, 91, int(d["reverb"]) // 2)

    bpm = case.bpm or 90.0
    n_bars = int(np.ceil(case.seconds * bpm / 240)) + 1
    loop = LOOPS[case.scale][int(d["loop"])]
    bars_per_chord = 2 if bpm >= 150 else 1
    intro = int(d["intro_bars"])
    voicing_low = int(rng.integers(52, 58))
    bass_pattern = d["bass_pattern"]
    comp = d["comp"]
    melody_idx = 0
    for bar in range(n_bars):
        b0 = 4.0 * bar
        degree = loop[(bar // bars_per_chord) % len(loop)]
        triad = [scale[(degree + i) % 7] for i in (0, 2, 4)]
        seventh = scale[(degree + 6) % 7]
        pcs = [*triad, seventh] if d["sevenths"] and bar % 2 else triad
        notes = [voicing_low + ((pc - voicing_low) % 12) for pc in pcs]
        root = 28 + ((triad[0] - 28) % 12)
        fifth = root + 7
        if case.kind != "drums_only":
            # Chords.
            if comp == "sustain" or case.kind == "pad_only":
                for n in notes:
                    song.note(CHORD, n, b0, 4.0, 78, jitter=3)
            elif comp == "quarters":
                for beat in range(4):
                    for n in notes:
                        song.note(CHORD, n, b0 + beat, 0.9, 70 if beat % 2 else 80)
            elif comp == "offbeats":
                for beat in range(4):
                    for n in notes:
                        song.note(CHORD, n, b0 + beat + 0.5, 0.4, 72)
            else:  # arpeggio in eighths
                for i in range(8):
                    song.note(CHORD, notes[i % len(notes)] + (12 if i >= 4 else 0), b0 + i / 2, 0.5, 72)
            # Bass.
            if case.kind != "pad_only" and bar >= intro // 2:
                if bass_pattern == "whole":
                    song.note(BASS, root, b0, 3.9, 95)
                elif bass_pattern == "quarters":
                    for beat in range(4):
                        song.note(BASS, root + (12 if beat == 3 else 0), b0 + beat, 0.9, 92)
                elif bass_pattern == "eighths":
                    for i in range(8):
                        song.note(BASS, root, b0 + i / 2, 0.45, 95 if i % 2 == 0 else 80)
                elif bass_pattern == "root_fifth":
                    for beat in range(4):
                        song.note(BASS, root if beat % 2 == 0 else fifth, b0 + beat, 0.9, 92)
                else:  # syncopated
                    for pos, length in ((0.0, 1.4), (1.5, 0.5), (2.0, 1.0), (3.5, 0.5)):
                        song.note(BASS, root if pos != 3.5 else fifth, b0 + pos, length, 95)
            # Melody: phrases of four bars that tend to resolve on the tonic, chord tones on strong beats.
            if case.kind == "music" and bar >= intro and (bar // 4) % 3 != 2:
                pos = 0.0
                while pos < 4.0:
                    dur = float(rng.choice([0.5, 1.0, 1.0, 2.0] if bpm < 140 else [1.0, 1.0, 2.0]))
                    dur = min(dur, 4.0 - pos)
                    if bar % 4 == 3 and pos >= 2.0:
                        dur = 4.0 - pos
                        melody_idx = int(rng.choice([0, 0, 0, 2, 4]))
                    elif pos in (0.0, 2.0):
                        melody_idx = (degree + 2 * int(rng.integers(3))) % 7
                    else:
                        melody_idx = (melody_idx + int(rng.choice([-1, 1, 1, 2, -2]))) % 7
                    if rng.random() < 0.85:
                        pitch = 67 + ((scale[melody_idx] - 67) % 12)
                        song.note(LEAD, pitch, b0 + pos, dur * 0.95, 90)
                    pos += dur
        # Drums.
        if case.kind != "pad_only" and bar >= intro:
            _drum_bar(song, case.feel, b0, rng, crash=(bar - intro) % 8 == 0, sixteenths=bool(d["hats16"]))
    # A last note-off a bar after the end keeps the renderer from cutting the tail.
    song.events.append((song.tick(4.0 * n_bars + 4, 0), 0, bytes([0x80, 0, 0])))
    write_midi(path, song.events, _Song.TPB)


def _drum_bar(song: _Song, feel: str, b0: float, rng: np.random.Generator, crash: bool, sixteenths: bool) -> None:
    n = song.note
    if crash:
        n(9, CRASH, b0, 1.0, 90)
    if feel == "swing":  # jazz ride, feathered kick, hi-hat foot on 2 and 4
        for pos in (0.0, 1.0, 1.5, 2.0, 3.0, 3.5):
            n(9, RIDE, b0 + pos, 0.3, 85 if pos in (1.0, 3.0) else 70)
        for beat in (1, 3):
            n(9, PEDAL_HAT, b0 + beat, 0.2, 80)
            n(9, SNARE, b0 + beat, 0.2, 60)
        for beat in (0, 2):
            n(9, KICK, b0 + beat, 0.2, 70)
        if rng.random() < 0.4:
            n(9, SNARE, b0 + 2.5, 0.2, 45)
        return
    step = 0.25 if sixteenths else 0.5
    for i in range(int(4 / step)):
        pos = i * step
        open_hat = feel == "four_floor" and abs(pos % 1.0 - 0.5) < 1e-6
        vel = 80 if pos % 1.0 == 0 else 62
        n(9, OPEN_HAT if open_hat else HAT, b0 + pos, step, vel)
    if feel == "four_floor":
        for beat in range(4):
            n(9, KICK, b0 + beat, 0.3, 112)
        for beat in (1, 3):
            n(9, CLAP, b0 + beat, 0.3, 95)
    elif feel == "half_time":  # kick on 1 (and a ghost), snare on 3
        n(9, KICK, b0, 0.3, 112)
        if rng.random() < 0.6:
            n(9, KICK, b0 + float(rng.choice([1.75, 2.5, 3.5])), 0.3, 90)
        n(9, SNARE, b0 + 2.0, 0.3, 110)
    elif feel == "breakbeat":
        for pos in (0.0, 1.5, 2.5):
            n(9, KICK, b0 + pos, 0.3, 108)
        for pos in (1.0, 3.0):
            n(9, SNARE, b0 + pos, 0.3, 105)
        if rng.random() < 0.5:
            n(9, SNARE, b0 + 3.75, 0.2, 55)
    else:  # rock / ballad backbeat
        n(9, KICK, b0, 0.3, 110)
        n(9, KICK, b0 + 2.0, 0.3, 105)
        if rng.random() < 0.4:
            n(9, KICK, b0 + 2.5, 0.3, 90)
        for beat in (1, 3):
            n(9, SNARE, b0 + beat, 0.3, 108)


def _render_song(case: Case, work: Path) -> np.ndarray:
    mid = work / "song.mid"
    wav = work / "song.wav"
    _compose(case, mid)
    effects = ["-R", "1", "-C", "1"] if case.details.get("reverb", 0) > 40 else ["-R", "0", "-C", "0"]
    _run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(RENDER_SR), *effects, "-F", str(wav),
          str(SOUNDFONT), str(mid)])  # fmt: skip
    y, _ = sf.read(str(wav), dtype="float64", always_2d=True)
    return y[: round(case.seconds * RENDER_SR)]


# --- null cases --------------------------------------------------------------------------------------


def _espeak(case: Case, work: Path) -> np.ndarray:
    wav = work / "speech.wav"
    voice = str(case.details.get("voice", "en"))
    speed = str(case.details.get("speed", 160))
    _run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(wav), SPEECH_TEXT])
    y, sr = sf.read(str(wav), dtype="float64")
    n = round(case.seconds * sr)
    y = np.tile(y, int(np.ceil(n / y.size)))[:n]
    return np.interp(np.arange(round(case.seconds * RENDER_SR)) * sr / RENDER_SR, np.arange(y.size), y)


def _render_null(case: Case, work: Path) -> np.ndarray:
    rng = np.random.default_rng(case.seed)
    n = round(case.seconds * RENDER_SR)
    what = case.details["what"]
    if what == "silence":
        return np.zeros(n)
    if what == "dither":
        return rng.uniform(-1, 1, n) * 10 ** (-90 / 20)
    white = rng.normal(0, 1, n)
    if what == "white":
        return white
    if what == "pink":  # Paul Kellet's economy filter
        return lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                       [1, -2.494956002, 2.017265875, -0.522189400], white)  # fmt: skip
    if what == "brown":
        return lfilter([1.0], [1, -0.995], white)
    if what == "speech_imitation":
        return speech_like(case.seconds, RENDER_SR, seed=int(rng.integers(2**31)), pauses=False)
    if what == "espeak":
        return _espeak(case, work)
    raise ValueError(what)


# --- levelling, codec, decode ------------------------------------------------------------------------


def _master(y: np.ndarray, gain_db: float, silent: bool) -> np.ndarray:
    if silent:
        return y
    y = y / (np.abs(y).max() + 1e-12) * 10 ** (-1 / 20)
    if gain_db > 0:  # loudness war: drive into a soft clipper
        g = 10 ** (gain_db / 20)
        return np.tanh(g * y) / np.tanh(g) * 10 ** (-0.3 / 20)
    return y * 10 ** (gain_db / 20)


def pcm_path(case: Case, cache_dir: Path) -> Path:
    """Where the case's decoded PCM is cached: named by a digest of everything that defines it."""
    digest = hashlib.sha256(json.dumps(asdict(case), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir / f"{case.name}-{digest}.s16le"


def render(case: Case, cache_dir: Path) -> Path:
    """The case's decoded mono s16le 22050 Hz PCM file, rendered once and cached."""
    out = pcm_path(case, cache_dir)
    if out.exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="analysis-bench-") as tmp:
        work = Path(tmp)
        y = _render_song(case, work) if case.kind in ("music", "drums_only", "pad_only", "short") else None
        if y is None:
            y = _render_null(case, work)
        y = _master(y, case.gain_db, silent=case.details.get("what") in ("silence", "dither"))
        wav = work / "master.wav"
        sf.write(str(wav), np.clip(y, -1, 1), RENDER_SR, subtype="PCM_16")
        ext, args = CODECS[case.codec]
        encoded = wav
        if args:
            encoded = work / f"encoded.{ext}"
            _run(_ffmpeg("-i", str(wav), *args, str(encoded)))
        tmp_out = work / "decoded.s16le"
        # The pipeline's analysis decode: mono, 22050 Hz, signed 16-bit little-endian.
        _run(_ffmpeg("-i", str(encoded), "-map_metadata", "-1", "-ac", "1", "-ar", str(SR), "-f", "s16le",
                     "-acodec", "pcm_s16le", str(tmp_out)))  # fmt: skip
        shutil.move(tmp_out, out)
    out.with_suffix(".json").write_text(json.dumps(asdict(case), indent=1))
    return out


def load(path: Path) -> np.ndarray:
    """The decoded PCM, mono int16 as the pipeline decodes it, as a read-only memmap (or empty array)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype="<i2")
    return np.memmap(path, dtype="<i2", mode="r")


# --- the set -----------------------------------------------------------------------------------------


def _music_case(i: int, rng: np.random.Generator, key_index: int, kind: str = "music") -> Case:
    tonic = NOTE_NAMES[key_index % 12]
    mode = "major" if key_index < 12 else "minor"
    scale = "major" if mode == "major" else str(rng.choice(["aeolian", "aeolian", "dorian", "harmonic"]))
    zone = rng.random()
    if zone < 0.2:
        bpm = rng.uniform(70, 90)
    elif zone < 0.4:
        bpm = rng.uniform(160, 180)
    else:
        bpm = rng.uniform(60, 200)
    bpm = round(float(bpm), 1)
    feels = ["rock", "rock", "breakbeat", "swing"]
    if 100 <= bpm <= 140:
        feels += ["four_floor", "four_floor"]
    if 130 <= bpm <= 180:
        feels += ["half_time", "half_time", "half_time"]
    feel = str(rng.choice(feels))
    if feel == "swing" and bpm < 80:
        feel = "rock"
    comps = ["sustain", "quarters", "offbeats", "arpeggio"]
    details: dict[str, object] = {
        "swing": round(float(rng.uniform(0.6, 0.67)), 3) if feel == "swing" else 0.0,
        "bass": int(rng.choice(BASSES)),
        "chords": int(rng.choice(PADS if kind == "pad_only" else CHORDS)),
        "lead": int(rng.choice(LEADS)),
        "kit": int(rng.choice(DRUM_KITS)),
        "bass_vol": int(rng.integers(85, 120)),
        "chord_vol": int(rng.integers(65, 110)),
        "lead_vol": int(rng.integers(70, 115)),
        "drum_vol": int(rng.integers(75, 127)),
        "reverb": int(rng.choice([0, 20, 60, 100])),
        "loop": int(rng.integers(len(LOOPS[scale]))),
        "intro_bars": int(rng.choice([0, 0, 1, 2])),
        "bass_pattern": str(rng.choice(["whole", "quarters", "eighths", "root_fifth", "syncopated"])),
        "comp": str(rng.choice(comps)),
        "sevenths": bool(rng.random() < 0.3),
        # Half-time is only told from a slow tempo by its density: sixteenths at the notated tempo.
        "hats16": feel == "half_time" or bool(rng.random() < 0.25 and bpm < 110),
    }
    tuning = round(float(rng.uniform(-30, 30)), 1) if rng.random() < 0.6 else 0.0
    gain = float(rng.choice([-26.0, -18.0, -12.0, -6.0, -3.0, 0.0, 0.0, 6.0, 12.0]))
    return Case(
        name=f"{kind}-{i:03d}", kind=kind, bpm=None if kind == "pad_only" else bpm,
        tonic=None if kind == "drums_only" else tonic, mode=None if kind == "drums_only" else mode,
        seconds=30.0, seed=int(rng.integers(2**31)), scale=scale, feel=feel, tuning_cents=tuning,
        codec=int(rng.integers(len(CODECS))), gain_db=gain, details=details,
    )  # fmt: skip


def build_set(n_music: int = 120, seed: int = 1, quick: bool = False) -> list[Case]:
    """The benchmark's cases: `n_music` songs over all 24 keys, then partial and null cases."""
    rng = np.random.default_rng(seed)
    keys = np.concatenate([rng.permutation(24) for _ in range(n_music // 24 + 1)])[:n_music]
    cases = [_music_case(i, rng, int(k)) for i, k in enumerate(keys)]
    if not quick:
        cases += [_music_case(i, rng, int(rng.integers(24)), "drums_only") for i in range(2)]
        cases += [_music_case(i, rng, int(rng.integers(24)), "pad_only") for i in range(2)]
    nulls: list[tuple[str, float, dict[str, object], int]] = [
        ("silence", 30.0, {"what": "silence"}, 0),
        ("dither", 30.0, {"what": "dither"}, 0),
        ("white", 30.0, {"what": "white"}, 2),
        ("pink", 30.0, {"what": "pink"}, 3),
        ("speech-en", 30.0, {"what": "espeak", "voice": "en", "speed": 160}, 2),
        ("short-2.5s", 2.5, {}, 0),
    ]
    if not quick:
        nulls += [
            ("brown", 30.0, {"what": "brown"}, 6),
            ("white-quiet", 30.0, {"what": "white"}, 7),
            ("speech-de", 30.0, {"what": "espeak", "voice": "de", "speed": 140}, 4),
            ("speech-en-fast", 30.0, {"what": "espeak", "voice": "en-us", "speed": 220}, 5),
            ("speech-imitation", 30.0, {"what": "speech_imitation"}, 1),
            ("short-1s", 1.0, {}, 1),
            ("short-2.9s", 2.9, {}, 3),
        ]
    for name, seconds, details, codec in nulls:
        kind = "short" if name.startswith("short") else ("silence" if name in ("silence", "dither") else "noise")
        if name.startswith("speech"):
            kind = "speech"
        sub = np.random.default_rng(int(rng.integers(2**31)))
        if kind == "short":
            base = _music_case(0, sub, int(sub.integers(24)))
            details = {**base.details}
            case = Case(name=f"null-{name}", kind="short", bpm=None, tonic=None, mode=None, seconds=seconds,
                        seed=base.seed, scale=base.scale, feel=base.feel, codec=codec, details=details)  # fmt: skip
        else:
            gain = -30.0 if name == "white-quiet" else -6.0
            case = Case(name=f"null-{name}", kind=kind, bpm=None, tonic=None, mode=None, seconds=seconds,
                        seed=int(sub.integers(2**31)), codec=codec, gain_db=gain, details=details)  # fmt: skip
        cases.append(case)
    return cases


def cache_dir_for(root: Path, seed: int) -> Path:
    return root / f"v{GENERATOR_VERSION}-seed{seed}"


def fit_arguments(description: str) -> argparse.ArgumentParser:
    """The command line of the model-fitting scripts (bench/fit_*.py): training and held-out seeds."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--test", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/analysis-bench"))
    return ap


def parse_fit_arguments(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse `fit_arguments`, refuse a seed both trained and tested on, and get the renderers ready."""
    args = ap.parse_args()
    if set(args.train) & set(args.test):
        ap.error("a seed cannot be in --train and --test")
    warnings.filterwarnings("ignore", category=UserWarning)  # librosa on pitchless or beatless songs
    ensure_tools()
    return args
