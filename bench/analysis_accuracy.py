"""Accuracy benchmark of `pipeline.analysis` against a naive librosa recipe, on generated songs.

    .venv/bin/python bench/analysis_accuracy.py            # 120 songs + partial and null cases
    .venv/bin/python bench/analysis_accuracy.py --quick    # 24 songs + 6 null cases, about a minute
    .venv/bin/python bench/analysis_accuracy.py --seed 2   # another, independent set (used for tuning)

The set is generated (and cached) by `bench/analysis_music.py`, installing fluidsynth, the GM soundfont
and espeak-ng with apt-get when missing. Each case is read as the pipeline reads it (a memory-mapped
mono s16le file at 22050 Hz) and analysed by `analyze_pcm` and by the naive recipe (`beat_track`, and
`chroma_cqt` correlated with Krumhansl-Kessler profiles) in the same process.

Tempo: Accuracy1 = within 4 %; Accuracy2 = also at x2, x1/2, x3, x1/3. Key: exact, and the MIREX weighted
score (exact 1, fifth 0.5, relative 0.3, parallel 0.2). A null answer counts as wrong. Calibration: the
fraction right per confidence bin. CPU: process CPU seconds per 30 s track (all threads), once warm, plus
one 4-minute track.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# As in a worker (pipeline/celery_app.py): librosa keeps its CQT filter banks on disk and numpy runs on
# one BLAS thread, so the CPU per track printed here is what a warm worker pays. Read at import, below.
os.environ.setdefault("LIBROSA_CACHE_DIR", "/tmp/analysis-bench/librosa-cache")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import analysis_music as music
import librosa
import numpy as np

from pipeline import analysis

KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)


@dataclass
class Answer:
    bpm: float | None
    key: str | None
    bpm_conf: float | None = None
    key_conf: float | None = None
    bpm_reason: str | None = None
    key_reason: str | None = None
    cpu: float = 0.0


def naive(y: np.ndarray, sr: int) -> Answer:
    """What a first attempt with librosa looks like: beat_track's tempo, mean chroma_cqt against K-K."""
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    best, key = -2.0, None
    for tonic in range(12):
        for name, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
            r = np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
            if r > best:
                best, key = r, f"{music.NOTE_NAMES[tonic]} {name}"
    return Answer(round(float(np.atleast_1d(tempo)[0]), 1), key)


def run_pipeline(pcm: np.ndarray) -> Answer:
    r = analysis.analyze_pcm(pcm, music.SR)
    return Answer(r.bpm, r.key, r.bpm_confidence, r.key_confidence, r.bpm_null_reason, r.key_null_reason)


def timed(fn, *args) -> Answer:
    t0 = time.process_time()
    a = fn(*args)
    a.cpu = time.process_time() - t0
    return a


# --- scoring -----------------------------------------------------------------------------------------


def tempo_class(est: float | None, truth: float) -> str:
    if est is None:
        return "null"
    for label, f in (("ok", 1.0), ("x2", 2.0), ("x1/2", 0.5), ("x3", 3.0), ("x1/3", 1 / 3)):
        if abs(est - truth * f) <= 0.04 * truth * f:
            return label
    return "other"


def key_class(est: str | None, truth: str) -> str:
    if est is None:
        return "null"
    et, em = est.split()
    tt, tm = truth.split()
    e, t = music.NOTE_NAMES.index(et), music.NOTE_NAMES.index(tt)
    if (e, em) == (t, tm):
        return "exact"
    if em == tm and (e - t) % 12 in (5, 7):
        return "fifth"
    if em != tm and (e - t) % 12 == (9 if tm == "major" else 3):
        return "relative"
    if em != tm and e == t:
        return "parallel"
    return "other"


MIREX = {"exact": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2, "other": 0.0, "null": 0.0}


def calibration(rows: list[tuple[float | None, bool]]) -> list[str]:
    out = []
    for lo, hi in itertools.pairwise(BINS):
        sel = [ok for c, ok in rows if c is not None and lo <= c < hi]
        frac = f"{np.mean(sel):.2f}" if sel else "  - "
        out.append(f"  [{lo:.1f}, {min(hi, 1.0):.1f}]  n={len(sel):3d}  right={frac}")
    nulls = sum(1 for c, _ in rows if c is None)
    out.append(f"  null        n={nulls:3d}")
    return out


def print_by_group(
    title: str,
    cases: list[tuple[music.Case, Answer, Answer | None]],
    groups_of: Callable[[music.Case], tuple[str, ...]],
    right: Callable[[Answer, music.Case], bool],
) -> None:
    """Accuracy per group (zone, feel, scale, codec), pipeline beside naive."""
    print(title)
    groups: dict[str, list[tuple[bool, bool | None]]] = defaultdict(list)
    for case, mine, naive_answer in cases:
        for group in groups_of(case):
            groups[group].append((right(mine, case), right(naive_answer, case) if naive_answer else None))
    for group, values in sorted(groups.items()):
        naive_values = [b for _, b in values if b is not None]
        naive_text = f"{np.mean(naive_values):.2f}" if naive_values else "-"
        print(f"  {group:12s} n={len(values):3d}  {np.mean([a for a, _ in values]):.2f} | {naive_text}")


def tempo_zone(bpm: float) -> str:
    for lo, hi in ((60, 70), (70, 90), (90, 160), (160, 180), (180, 201)):
        if lo <= bpm < hi:
            return f"{lo}-{min(hi, 200)}"
    return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="24 songs and 6 null cases")
    ap.add_argument("-n", type=int, default=120, help="number of songs (default 120)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/analysis-bench"))
    ap.add_argument("--no-naive", action="store_true", help="skip the naive recipe")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    args = ap.parse_args()
    # librosa's "empty frequency set" and numpy's zero-variance warnings on the silent cases are expected.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    music.ensure_tools()
    cases = music.build_set(24 if args.quick else args.n, seed=args.seed, quick=args.quick)
    cache = music.cache_dir_for(args.cache, args.seed)
    todo = [c for c in cases if not music.pcm_path(c, cache).exists()]
    if todo:
        print(f"rendering {len(todo)} cases into {cache} ...", flush=True)
        t0 = time.monotonic()
        for i, c in enumerate(todo, 1):
            music.render(c, cache)
            if i % 10 == 0:
                print(f"  {i}/{len(todo)}  {time.monotonic() - t0:.0f} s", flush=True)
    analysis.warm_up()
    naive(np.zeros(5 * music.SR, dtype=np.float32) + 0.01, music.SR)  # warm librosa's JIT for the naive too

    results: list[tuple[music.Case, Answer, Answer | None]] = []
    looped: dict[str, Answer] = {}
    for c in cases:
        pcm = music.load(music.pcm_path(c, cache))
        mine = timed(run_pipeline, pcm)
        theirs = None if args.no_naive else timed(naive, np.asarray(pcm, dtype=np.float32) / 32768.0, music.SR)
        results.append((c, mine, theirs))
        if c.kind == "music":  # inputs over a minute are analysed from excerpts: see `print_looped`
            looped[c.name] = run_pipeline(np.tile(np.asarray(pcm), LOOPS))
    report(results, args, cache)
    print_looped(results, looped)


# Each song looped to 90 s: longer than `analysis.MAX_ANALYSED_SECONDS`, so it is analysed as full-length
# tracks are (the opening and two excerpts from the body), with the same music and answer. Only the key
# is scored: the loop's seams break the beat grid, which a real track does not.
LOOPS = 3


def print_looped(results: list[tuple[music.Case, Answer, Answer | None]], looped: dict[str, Answer]) -> None:
    songs = [(c, looped[c.name]) for c, _, _ in results if c.name in looped and c.tonic is not None]
    if not songs:
        return
    keys = [key_class(a.key, c.key) for c, a in songs]
    exact, mirex = np.mean([k == "exact" for k in keys]), np.mean([MIREX[k] for k in keys])
    print(
        f"\nthe songs looped {LOOPS}x, analysed as full-length tracks are (opening + two body excerpts;"
        f" n={len(songs)}): key exact {exact:.3f}, MIREX {mirex:.3f}"
    )


def report(results: list[tuple[music.Case, Answer, Answer | None]], args: argparse.Namespace, cache: Path) -> None:
    songs = [(c, m, n) for c, m, n in results if c.kind == "music"]
    tempo_cases = [(c, m, n) for c, m, n in results if c.bpm is not None]
    key_cases = [(c, m, n) for c, m, n in results if c.tonic is not None]
    who = ("pipeline", "naive")

    def pick(m: Answer, n: Answer | None, w: str) -> Answer | None:
        return m if w == "pipeline" else n

    print(
        f"\n=== analysis benchmark: seed {args.seed}, {len(songs)} songs, {len(results) - len(songs)} other cases,"
        f" ANALYSIS_VERSION {analysis.ANALYSIS_VERSION} ===\n"
    )
    print(f"{'':34s}{'pipeline':>10s}{'naive':>10s}")

    def line(label: str, vals: list[float | None], fmt: str = "{:10.3f}") -> None:
        print(f"{label:34s}" + "".join(fmt.format(v) if v is not None else f"{'-':>10s}" for v in vals))

    tclass = {w: [tempo_class(a.bpm, c.bpm) for c, m, n in tempo_cases if (a := pick(m, n, w))] for w in who}
    kclass = {w: [key_class(a.key, c.key) for c, m, n in key_cases if (a := pick(m, n, w))] for w in who}
    line(f"tempo Accuracy1 (n={len(tempo_cases)})", [np.mean([k == "ok" for k in tclass[w]]) if tclass[w] else None
                                                     for w in who])  # fmt: skip
    line("tempo Accuracy2", [np.mean([k in ("ok", "x2", "x1/2", "x3", "x1/3") for k in tclass[w]])
                             if tclass[w] else None for w in who])  # fmt: skip
    line(f"key exact (n={len(key_cases)})", [np.mean([k == "exact" for k in kclass[w]]) if kclass[w] else None
                                             for w in who])  # fmt: skip
    line("key MIREX weighted", [np.mean([MIREX[k] for k in kclass[w]]) if kclass[w] else None for w in who])
    nulls = [(c, m, n) for c, m, n in results if c.bpm is None and c.tonic is None]
    line(f"null cases answered null (n={len(nulls)})",
         [np.mean([(a.bpm is None and a.key is None) for c, m, n in nulls if (a := pick(m, n, w))])
          if nulls and pick(*nulls[0][1:], w) else None for w in who])  # fmt: skip
    answered_t = [tempo_class(m.bpm, c.bpm) for c, m, _ in tempo_cases if m.bpm is not None]
    answered_k = [key_class(m.key, c.key) for c, m, _ in key_cases if m.key is not None]
    line(
        "tempo answered / right when answered",
        [len(answered_t) / max(len(tempo_cases), 1), np.mean([k == "ok" for k in answered_t]) if answered_t else None],
    )
    line(
        "key answered / exact when answered",
        [len(answered_k) / max(len(key_cases), 1), np.mean([k == "exact" for k in answered_k]) if answered_k else None],
    )
    cpu = {w: [a.cpu for c, m, n in songs if (a := pick(m, n, w))] for w in who}
    line("CPU s/track (30 s, mean)", [np.mean(cpu[w]) if cpu[w] else None for w in who])
    line("CPU s/track (30 s, max)", [np.max(cpu[w]) if cpu[w] else None for w in who])

    print("\ntempo outcomes            " + "  ".join(f"{w}: {dict(Counter(tclass[w]).most_common())}" for w in who))
    print("key outcomes              " + "  ".join(f"{w}: {dict(Counter(kclass[w]).most_common())}" for w in who))

    print_by_group(
        "\ntempo Accuracy1 by zone / feel (pipeline | naive):",
        [(c, m, n) for c, m, n in tempo_cases if c.kind == "music"],
        lambda c: (tempo_zone(c.bpm), c.feel),
        lambda answer, c: tempo_class(answer.bpm, c.bpm) == "ok",
    )
    print_by_group(
        "key exact by scale / codec (pipeline | naive):",
        [(c, m, n) for c, m, n in key_cases if c.kind == "music"],
        lambda c: (c.scale, c.codec_name),
        lambda answer, c: key_class(answer.key, c.key) == "exact",
    )

    print("\ncalibration, tempo (bpm_confidence bin: fraction within 4 %):")
    print("\n".join(calibration([(m.bpm_conf, tempo_class(m.bpm, c.bpm) == "ok") for c, m, _ in tempo_cases])))
    print("calibration, key (key_confidence bin: fraction exact):")
    print("\n".join(calibration([(m.key_conf, key_class(m.key, c.key) == "exact") for c, m, _ in key_cases])))

    print("\ncases with no (or a partial) answer expected:")
    for c, m, n in results:
        if c.kind == "music":
            continue
        want_t = "null" if c.bpm is None else f"{c.bpm}"
        want_k = "null" if c.tonic is None else c.key
        got_t = m.bpm if m.bpm is not None else f"null ({m.bpm_reason})"
        got_k = m.key if m.key is not None else f"null ({m.key_reason})"
        ok = (m.bpm is None) == (c.bpm is None) and (m.key is None) == (c.tonic is None)
        naive_s = f" | naive: {n.bpm} / {n.key}" if n else ""
        print(f"  {'ok  ' if ok else 'MISS'} {c.name:22s} want {want_t} / {want_k}; got {got_t} / {got_k}{naive_s}")

    # A 4-minute track: eight songs back to back, as one memory-mapped file.
    stems = "".join(music.pcm_path(c, cache).stem for c, _, _ in songs[:8])
    long_path = cache / f"long-4min-{hashlib.sha256(stems.encode()).hexdigest()[:12]}.s16le"
    if not long_path.exists():
        parts = [np.asarray(music.load(music.pcm_path(c, cache))) for c, _, _ in songs[:8]]
        np.concatenate(parts)[: 240 * music.SR].astype("<i2").tofile(long_path)
    pcm = music.load(long_path)
    runs = [timed(run_pipeline, pcm).cpu for _ in range(3)]
    print(
        f"\n4-minute track ({pcm.size / music.SR:.0f} s, memory-mapped): pipeline CPU {np.median(runs):.3f} s "
        f"(median of 3)"
    )

    if args.verbose:
        print("\nmisses (pipeline):")
        for c, m, _ in songs:
            tc, kc = tempo_class(m.bpm, c.bpm), key_class(m.key, c.key)
            if tc != "ok" or kc != "exact":
                print(
                    f"  {c.name} {c.feel:10s} {c.scale:9s} {c.codec_name:9s} tune {c.tuning_cents:+5.1f} "
                    f"gain {c.gain_db:+5.1f} | bpm {c.bpm} -> {m.bpm} ({tc}, conf {m.bpm_conf}) | "
                    f"key {c.key} -> {m.key} ({kc}, conf {m.key_conf}, {m.key_reason})"
                )


if __name__ == "__main__":
    main()
