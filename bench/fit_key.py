"""Refit the key model of `pipeline.analysis` (`KEY_WEIGHTS`) on generated songs, and compare it with the
model in the code on held-out sets.

The key is a conditional logit over the 24 keys: each feature of `_key_features` gives every key a score,
and the key's logit is the weighted sum. For every song of the training seeds that gets as far as those
features, this records them and the annotated key, twice: from the song's start and from a random point
0.5-3.5 bars in (a short upload may be cut from the middle of a song, where the opening chord and the
phrase grid mislead). It fits the weights on both by maximum likelihood (with a weak L2 penalty), and
prints, per held-out seed and view, the exact and MIREX key scores and the log-loss of the current and the
refitted weights (on the songs that reach the model: the benchmark also counts nulls as wrong). It fits
`KEY_WEIGHTS_EXCERPTS`, the model for input whose opening was not heard, on the same songs with the
features that model has.

    .venv/bin/python bench/fit_key.py --train 2 3 --test 1 4 5

Songs are rendered into the accuracy benchmark's cache when missing (see bench/analysis_music.py).
Keep the seeds you report accuracy on (bench/analysis_accuracy.py) out of --train.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
os.environ.setdefault("LIBROSA_CACHE_DIR", "/tmp/analysis-bench/librosa-cache")

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis_accuracy as accuracy  # noqa: E402
import analysis_music as music  # noqa: E402

from pipeline import analysis  # noqa: E402

L2 = 1e-3  # per song: keeps weights of useless features near 0 without shrinking the useful ones


def key_index(tonic: str, mode: str) -> int:
    return analysis.PITCH_CLASSES.index(tonic) + (12 if mode == "minor" else 0)


def key_name(index: int) -> str:
    return f"{analysis.PITCH_CLASSES[index % 12]} {'minor' if index >= 12 else 'major'}"


Examples = tuple[list[dict[str, np.ndarray]], np.ndarray]


def key_examples(seed: int, cache_root: Path) -> dict[str, Examples]:
    """Per view of each song with a key whose analysis reaches the key model: (features of `_key_features`,
    annotated key index). Views: "start", the song from its start, and "cut", from a random point 0.5-3.5
    bars in, as a short upload cut from the middle of a song is heard: its opening and phrase grid mislead,
    and the model must not trust them blindly."""
    cases = [c for c in music.build_set(120, seed=seed) if c.tonic is not None and c.mode is not None]
    cache = music.cache_dir_for(cache_root, seed)
    rng = np.random.default_rng(seed)
    seen: list[dict[str, np.ndarray]] = []
    features = analysis._key_features

    def record(spectrograms: list[np.ndarray], bpm: float | None, from_start: bool) -> dict[str, np.ndarray]:
        out = features(spectrograms, bpm, from_start)
        if from_start:
            seen.append(out)
        return out

    views: dict[str, tuple[list[dict[str, np.ndarray]], list[int]]] = {"start": ([], []), "cut": ([], [])}
    analysis._key_features = record
    try:
        for case in cases:
            pcm = music.load(music.render(case, cache))
            bar = 4 * 60.0 / (case.bpm or 120.0) * music.SR  # samples; pads play at MIDI's default 120 BPM
            cut = int(rng.uniform(0.5, 3.5) * bar)
            for view, samples in (("start", pcm), ("cut", pcm[cut:])):
                seen.clear()
                analysis.analyze_pcm(np.asarray(samples))
                if seen:
                    views[view][0].append(seen[0])
                    views[view][1].append(key_index(case.tonic, case.mode))
    finally:
        analysis._key_features = features
    return {view: (xs, np.array(ys)) for view, (xs, ys) in views.items()}


def stack(xs: list[dict[str, np.ndarray]], names: list[str]) -> np.ndarray:
    """songs x features x 24 keys."""
    return np.array([[x[n] for n in names] for x in xs])


def log_softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.arange(len(y))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        lp = log_softmax(np.einsum("f,sfk->sk", w, x))
        p = np.exp(lp)
        expected = np.einsum("sk,sfk->sf", p, x)
        grad = -(x[rows, :, y] - expected).sum(axis=0) + 2 * L2 * len(y) * w
        return float(-lp[rows, y].sum() + L2 * len(y) * w @ w), grad

    return minimize(loss, np.ones(x.shape[1]), jac=True, method="L-BFGS-B").x


def mirex(est: np.ndarray, truth: np.ndarray) -> float:
    """The MIREX weighted key score, as the accuracy benchmark scores it."""
    classes = [accuracy.key_class(key_name(e), key_name(t)) for e, t in zip(est, truth, strict=True)]
    return float(np.mean([accuracy.MIREX[c] for c in classes]))


def scores_line(label: str, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> str:
    lp = log_softmax(np.einsum("f,sfk->sk", w, x))
    est = lp.argmax(axis=1)
    return (
        f"{label} exact {(est == y).mean():.3f}  MIREX {mirex(est, y):.3f}  "
        f"log-loss {-lp[np.arange(len(y)), y].mean():.3f}"
    )


def main() -> None:
    args = music.parse_fit_arguments(music.fit_arguments(__doc__))
    analysis.warm_up()

    train = [key_examples(seed, args.cache) for seed in args.train]
    tests = {seed: key_examples(seed, args.cache) for seed in args.test}
    xs = [x for t in train for view in t.values() for x in view[0]]
    y = np.concatenate([view[1] for t in train for view in t.values()])
    # The full model, and the one for input whose opening was not heard (no opening chord, no phrase grid).
    for label, names, weights in (
        ("KEY_WEIGHTS", list(xs[0]), analysis.KEY_WEIGHTS),
        ("KEY_WEIGHTS_EXCERPTS", list(analysis.KEY_WEIGHTS_EXCERPTS), analysis.KEY_WEIGHTS_EXCERPTS),
    ):
        current = np.array([weights.get(n, 0.0) for n in names])
        refit = fit(stack(xs, names), y)
        print(f"\n{label}: train seeds {args.train}, {len(y)} views of songs; features {names}")
        for seed, views in tests.items():
            for view, (xt, yt) in views.items():
                print(f"held-out seed {seed}, {len(yt)} songs from their {view}:")
                print(scores_line("  current ", stack(xt, names), yt, current))
                print(scores_line("  refitted", stack(xt, names), yt, refit))
        print(label, "=", "{" + ", ".join(f'"{n}": {w:.2f}' for n, w in zip(names, refit, strict=True)) + "}")


if __name__ == "__main__":
    main()
