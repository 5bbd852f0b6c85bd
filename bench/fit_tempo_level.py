"""Refit the metrical-level model of `pipeline.analysis` (`_LEVEL_MEAN`, `_LEVEL_STD`, `_LEVEL_WEIGHTS`,
`_LEVEL_BIAS`) on generated songs, and compare it with the model in the code on held-out sets.

For every song of the training seeds it runs the pipeline's own analysis and records, where the tempo search
found the song's pulse up to a factor of two, the level model's input (`level_feature_vector`) and which
level is the annotated one. It fits an L2-regularised logistic regression (scikit-learn, which librosa
already requires), prints its 10-fold cross-validated level accuracy, the level accuracy of the current and
the refitted model on each held-out seed, and the constants to paste into `pipeline/analysis.py`.

    .venv/bin/python bench/fit_tempo_level.py --train 2 3 6 7 --test 1 4 5

Songs are rendered into the accuracy benchmark's cache when missing (see bench/analysis_music.py).
Keep the seeds you report accuracy on (bench/analysis_accuracy.py) out of --train.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis_music as music  # noqa: E402

from pipeline import analysis  # noqa: E402

OCTAVE_TOLERANCE = 0.04  # as tempo Accuracy1


def level_examples(seed: int, cache_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, 1 if the faster level is the annotated tempo) for each song whose pulse was found."""
    cases = [c for c in music.build_set(120, seed=seed) if c.kind == "music" and c.bpm is not None]
    cache = music.cache_dir_for(cache_root, seed)
    seen: list[tuple[np.ndarray, float]] = []
    level = analysis._metrical_level

    def record(onsets: analysis.Onsets, sr: int, bpm0: float) -> tuple[float, float, float]:
        slow = analysis.slow_pulse(bpm0)
        seen.append((analysis.level_feature_vector(onsets, sr, slow), slow))
        return level(onsets, sr, bpm0)

    xs, ys = [], []
    analysis._metrical_level = record
    try:
        for case in cases:
            seen.clear()
            analysis.analyze_pcm(music.load(music.render(case, cache)))
            if not seen:
                continue  # no pulse: nothing for the level model to decide
            x, slow = seen[0]
            for label, bpm in ((1, 2 * slow), (0, slow)):
                if abs(bpm - case.bpm) / case.bpm <= OCTAVE_TOLERANCE:
                    xs.append(x)
                    ys.append(label)
    finally:
        analysis._metrical_level = level
    return np.array(xs), np.array(ys)


def current_model(x: np.ndarray) -> np.ndarray:
    return (analysis.fast_level_probability(x) >= 0.5).astype(int)


def main() -> None:
    ap = music.fit_arguments(__doc__)
    ap.add_argument("-C", type=float, default=1.0, help="inverse L2 strength")
    args = music.parse_fit_arguments(ap)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    analysis.warm_up()
    train = [level_examples(seed, args.cache) for seed in args.train]
    x = np.concatenate([t[0] for t in train])
    y = np.concatenate([t[1] for t in train])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=args.C, max_iter=1000)
    cv = cross_val_score(model, (x - mean) / std, y, cv=10).mean()
    model.fit((x - mean) / std, y)
    print(f"train seeds {args.train}: {len(y)} songs, {y.mean():.0%} at the faster level; 10-fold CV {cv:.3f}")
    print(f"  the current model on them: {(current_model(x) == y).mean():.3f}")
    for seed in args.test:
        xt, yt = level_examples(seed, args.cache)
        now, refit = (current_model(xt) == yt).mean(), (model.predict((xt - mean) / std) == yt).mean()
        print(f"held-out seed {seed}: {len(yt)} songs; level accuracy current {now:.3f}, refitted {refit:.3f}")

    def constant(values: np.ndarray) -> str:
        return "np.array([" + ", ".join(f"{v:.4g}" for v in values) + "])"

    print("\n_LEVEL_MEAN =", constant(mean))
    print("_LEVEL_STD =", constant(std))
    print("_LEVEL_WEIGHTS =", constant(model.coef_[0]))
    print(f"_LEVEL_BIAS = {model.intercept_[0]:.4f}")


if __name__ == "__main__":
    main()
