"""Deterministic generator of realistic-ish test music with a known tempo and key.

Used by the demo (its output is encoded to mp3/flac/wav/m4a/ogg) and by the analysis tests. The track is a
four-piece band: a synthesised drum kit, a bass line on the chord roots, a chord progression with a
harmonic-rich timbre and a simple scale melody. Everything is drawn from a seeded RNG, so a given
(bpm, tonic, mode, seconds, sample_rate, seed) always renders the same samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, lfilter, sosfilt

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E"}

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Chord roots as 0-based scale degrees, one chord per bar, in an 8-bar cycle: a looping phrase and an
# answering phrase that cadences home, as songs do. The minor loop is Aeolian i-VI-III-VII, whose pitch
# content leans towards the relative major: a deliberately tempting case for key detection.
PROGRESSIONS = {"major": (0, 4, 5, 3, 0, 3, 4, 0), "minor": (0, 5, 2, 6, 0, 5, 6, 0)}

PEAK_DBFS = -1.0


def pitch_class(name: str) -> int:
    """Pitch class (C=0) of a note name; flats are accepted and mapped to sharps."""
    name = _FLATS.get(name, name)
    if name not in NOTE_NAMES:
        raise ValueError(f"unknown note name {name!r}")
    return NOTE_NAMES.index(name)


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _adsr(n: int, sr: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """Linear attack, exponential decay to `sustain`, linear release over the last `release` seconds."""
    t = np.arange(n) / sr
    env = sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / max(decay, 1e-4))
    a = max(int(attack * sr), 1)
    env[:a] *= np.linspace(0.0, 1.0, min(a, n), endpoint=False)
    r = min(max(int(release * sr), 1), n)
    env[n - r :] *= np.linspace(1.0, 0.0, r)
    return env


def _tone(freq: float, n: int, sr: int, harmonics: tuple[float, ...], phase: float = 0.0) -> np.ndarray:
    """Additive tone: `harmonics[k]` is the amplitude of partial k+1 (partials above Nyquist dropped)."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k, amp in enumerate(harmonics, start=1):
        if amp and freq * k < sr / 2:
            out += amp * np.sin(2 * np.pi * freq * k * t + phase * k)
    return out


def _add(buf: np.ndarray, start: int, sig: np.ndarray, gains: tuple[float, float]) -> None:
    """Mix a mono signal into the stereo buffer at `start` with per-channel gains, clipping at the end."""
    if start >= len(buf):
        return
    start = max(start, 0)
    sig = sig[: len(buf) - start]
    buf[start : start + len(sig), 0] += gains[0] * sig
    buf[start : start + len(sig), 1] += gains[1] * sig


def _drum_kit(sr: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """A few variants of each drum so repeated hits are not sample-identical."""
    kit: dict[str, list[np.ndarray]] = {"kick": [], "snare": [], "hat": []}
    hp = butter(2, 7000, btype="highpass", fs=sr, output="sos") if sr > 16000 else None
    bp = butter(2, [1200, min(6000, sr / 2 - 100)], btype="bandpass", fs=sr, output="sos")
    for _ in range(4):
        # Kick: a sine swept from ~150 Hz down to ~45 Hz with a fast click and an exponential body.
        n = int(0.35 * sr)
        t = np.arange(n) / sr
        f = 45.0 + 110.0 * np.exp(-t / 0.035)
        kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)
        kick[: int(0.003 * sr)] += rng.normal(0, 0.3, int(0.003 * sr))
        kit["kick"].append(kick)
        # Snare: band-passed noise burst plus a short 190 Hz body.
        n = int(0.25 * sr)
        t = np.arange(n) / sr
        noise = sosfilt(bp, rng.normal(0, 1, n)) * np.exp(-t / 0.07)
        body = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.04)
        kit["snare"].append(0.9 * noise / (np.abs(noise).max() + 1e-9) + 0.5 * body)
        # Closed hi-hat: high-passed noise with a very short decay.
        n = int(0.08 * sr)
        t = np.arange(n) / sr
        hat = rng.normal(0, 1, n)
        hat = sosfilt(hp, hat) if hp is not None else np.diff(hat, prepend=0.0)
        kit["hat"].append(hat / (np.abs(hat).max() + 1e-9) * np.exp(-t / 0.018))
    return kit


def _voice(pcs: list[int], low: int) -> list[int]:
    """MIDI notes for pitch classes, each placed at or just above `low`."""
    return [low + ((pc - low) % 12) for pc in pcs]


def render_track(
    bpm: float, tonic: str, mode: str, seconds: float, sample_rate: int = 44100, seed: int = 0
) -> np.ndarray:
    """Render `seconds` of 4/4 music at `bpm` in `tonic` `mode` as float32 stereo (n, 2), peak -1 dBFS."""
    if mode not in SCALES:
        raise ValueError(f"mode must be 'major' or 'minor', not {mode!r}")
    if bpm <= 0 or seconds <= 0:
        raise ValueError("bpm and seconds must be positive")
    sr = sample_rate
    rng = np.random.default_rng(seed)
    root_pc = pitch_class(tonic)
    scale = [(root_pc + s) % 12 for s in SCALES[mode]]
    n_total = round(seconds * sr)
    buf = np.zeros((n_total, 2))
    beat = 60.0 / bpm
    n_beats = int(np.ceil(seconds / beat)) + 1
    kit = _drum_kit(sr, rng)
    cache: dict[tuple[object, ...], np.ndarray] = {}  # rendered notes/chords, reused on every repeat

    def at(beat_pos: float, jitter: float = 0.004) -> int:
        # Small timing jitter so the onsets are "played", not perfectly quantised.
        return round((beat_pos * beat + rng.normal(0, jitter)) * sr)

    # Drums: kick on 1 and 3, snare on 2 and 4, hats on every eighth (on-beat hats a bit louder).
    for b in range(n_beats):
        drum = "kick" if b % 2 == 0 else "snare"
        vel = rng.uniform(0.85, 1.0)
        _add(buf, at(b), kit[drum][rng.integers(4)], (0.8 * vel, 0.8 * vel))
        if drum == "kick" and b % 8 == 6 and rng.random() < 0.5:  # occasional extra kick on the "and"
            _add(buf, at(b + 0.5), kit["kick"][rng.integers(4)], (0.5, 0.5))
        for half in (0.0, 0.5):
            hv = rng.uniform(0.18, 0.24) if half == 0.0 else rng.uniform(0.10, 0.15)
            _add(buf, at(b + half), kit["hat"][rng.integers(4)], (0.7 * hv, hv))

    n_bars = n_beats // 4 + 1
    prog = PROGRESSIONS[mode]
    chord_harm = (1.0, 0.5, 0.33, 0.25, 0.15, 0.1)
    bass_harm = (1.0, 0.5, 0.3, 0.2, 0.12, 0.08)
    lead_harm = (1.0, 0.35, 0.15, 0.05)
    for bar in range(n_bars):
        degree = prog[bar % len(prog)]
        chord_pcs = [scale[(degree + i) % 7] for i in (0, 2, 4)]
        bar_start = bar * 4

        # Chords: one sustained triad per bar, voiced around middle C, slightly detuned left/right.
        if ("chord", degree) not in cache:
            n = int(4 * beat * sr)
            env = _adsr(n, sr, attack=0.015, decay=0.6, sustain=0.55, release=0.08)
            sides = []
            for detune in (-0.04, 0.04):
                sides.append(env * sum(
                    _tone(_hz(m + detune), n, sr, chord_harm, phase=rng.uniform(0, 2 * np.pi))
                    for m in _voice(chord_pcs, 55)
                ))  # fmt: skip
            cache[("chord", degree)] = np.stack(sides, axis=1)
        start = at(bar_start, 0.002)
        _add(buf, start, cache[("chord", degree)][:, 0], (0.09, 0.0))
        _add(buf, start, cache[("chord", degree)][:, 1], (0.0, 0.09))

        # Bass: the chord root on each beat, octave up on beat 4.
        root_midi = _voice([chord_pcs[0]], 33)[0]
        for b in range(4):
            midi = root_midi + (12 if b == 3 else 0)
            if ("bass", midi) not in cache:
                n = int(0.95 * beat * sr)
                env = _adsr(n, sr, attack=0.005, decay=0.25, sustain=0.4, release=0.03)
                cache[("bass", midi)] = _tone(_hz(midi), n, sr, bass_harm) * env
            _add(buf, at(bar_start + b), cache[("bass", midi)], (0.32, 0.32))

        # Melody: scale notes on quarter/eighth rhythms. Like most tunes it gravitates to the tonic: each
        # 4-bar phrase starts on it and ends on it held for two beats; strong beats take chord tones,
        # favouring the key's tonic and fifth when the chord has them; weak beats move by step.
        pos = 0.0
        degree_idx = int(rng.integers(0, 7))
        while pos < 4.0:
            dur = 0.5 if rng.random() < 0.4 else 1.0
            if bar % 4 == 3 and pos >= 2.0:
                dur, degree_idx = 4.0 - pos, 0
            elif bar % 4 == 0 and pos == 0.0:
                degree_idx = 0
            elif pos in (0.0, 2.0):
                weights = np.array([2.0 if pc in (scale[0], scale[4]) else 1.0 for pc in chord_pcs])
                degree_idx = (degree + 2 * int(rng.choice(3, p=weights / weights.sum()))) % 7
            else:
                degree_idx = (degree_idx + int(rng.choice([-2, -1, 1, 2]))) % 7
            dur = min(dur, 4.0 - pos)
            pc = scale[degree_idx]
            if rng.random() < 0.85:  # leave the odd rest
                n = int(dur * beat * sr)
                midi = _voice([pc], 67)[0]
                if ("lead", midi, n) not in cache:
                    vib = 1.0 + 0.003 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sr)
                    phase = 2 * np.pi * _hz(midi) * np.cumsum(vib) / sr
                    sig = sum(a * np.sin(k * phase) for k, a in enumerate(lead_harm, start=1))
                    env = _adsr(n, sr, attack=0.02, decay=0.3, sustain=0.6, release=0.05)
                    cache[("lead", midi, n)] = np.asarray(sig) * env
                _add(buf, at(bar_start + pos), cache[("lead", midi, n)], (0.14, 0.10))
            pos += dur

    peak = float(np.abs(buf).max())
    if peak > 0:
        buf *= 10.0 ** (PEAK_DBFS / 20.0) / peak
    return buf.astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write float samples ((n,) or (n, channels)) as 16-bit PCM WAV."""
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16")


def speech_like(seconds: float, sample_rate: int, seed: int = 0, *, pauses: bool = True) -> np.ndarray:
    """Mono float32 that has speech's traits without a word: a voiced source with a gliding pitch,
    irregular syllables (and pauses) through moving vowel formants. Analysis must call it neither
    music with a tempo nor with a key."""
    rng = np.random.default_rng(seed)
    sr = sample_rate
    n = int(seconds * sr)
    t = np.arange(n) / sr
    knots = rng.uniform(100, 190, int(seconds * 3) + 2)
    phase = np.cumsum(np.interp(t, np.linspace(0, seconds, knots.size), knots)) / sr
    source = sum(np.sin(2 * np.pi * k * phase) / k for k in range(1, 30))
    syllables = np.zeros(n)
    pos = 0
    while pos < n:
        d = int(rng.uniform(0.08, 0.35) * sr)
        seg = syllables[pos : pos + d]
        seg[:] = np.hanning(d)[: seg.size] ** 0.5 * rng.uniform(0.4, 1.0)
        pos += d + int(rng.exponential(0.06) * sr)
    y = source * syllables
    if pauses:
        gaps = rng.random(int(seconds / 1.5) + 2)
        y = y * (np.interp(t, np.linspace(0, seconds, gaps.size), gaps) > 0.25)
    # Vowels of irregular length, the resonators' state carried from one to the next: a fixed segment
    # length with filters restarted at each boundary put a metronome-like 10 Hz grid into the signal,
    # which is a pulse, not speech.
    out = np.zeros(n)
    vowels = [(730, 1090), (270, 2290), (300, 870), (530, 1840), (640, 1190)]
    states = [np.zeros(2), np.zeros(2)]
    s = 0
    while s < n:
        seg = y[s : s + int(rng.uniform(0.06, 0.2) * sr)]
        for i, f in enumerate(vowels[rng.integers(len(vowels))]):
            r, theta = 0.97, 2 * np.pi * f / sr
            seg, states[i] = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], seg, zi=states[i])
        out[s : s + seg.size] = seg
        s += seg.size
    return (0.8 * out / max(np.abs(out).max(), 1e-9)).astype(np.float32)
