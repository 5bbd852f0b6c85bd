"""Refit the metrical-level model of `pipeline.analysis` (the constants in `pipeline/tempo_level_model.py`)
on generated songs, and compare it with the model in the code on held-out sets.

For every song of the training seeds it runs the pipeline's own analysis and records, where the tempo search
found the song's pulse up to a factor of two, the level model's input (`level_feature_vector`) and which
level is the annotated one. It fits an L2-regularised logistic regression (scikit-learn, which librosa
already requires), prints its 10-fold cross-validated level accuracy and the level accuracy of the current
and the refitted model on each held-out seed; with --write it rewrites `pipeline/tempo_level_model.py`.

    .venv/bin/python bench/fit_tempo_level.py --write

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


MODEL_MODULE = Path(__file__).resolve().parents[1] / "pipeline" / "tempo_level_model.py"


def current_model(x: np.ndarray) -> np.ndarray | None:
    """The level decisions of the model in the code, or None if it was fitted on other features."""
    if analysis.level_model.WEIGHTS.size != x.shape[1]:
        return None
    return (analysis.fast_level_probability(x) >= 0.5).astype(int)


def accuracy(predicted: np.ndarray | None, y: np.ndarray) -> str:
    return "n/a" if predicted is None else f"{(predicted == y).mean():.3f}"


def write_module(mean: np.ndarray, std: np.ndarray, weights: np.ndarray, bias: float, provenance: list[str]) -> None:
    def constant(name: str, values: np.ndarray) -> str:
        items = [f"{v:.5g}" for v in values]
        lines = [", ".join(items[i : i + 10]) for i in range(0, len(items), 10)]
        return f"{name} = np.array([\n    " + ",\n    ".join(lines) + ",\n])  # fmt: skip\n"

    MODEL_MODULE.write_text(
        '"""The metrical-level model of `pipeline.analysis` (logistic regression on `level_feature_vector`).\n\n'
        "Written by bench/fit_tempo_level.py --write: refit it there rather than edit by hand.\n"
        + "".join(f"{line}\n" for line in provenance)
        + '"""\n\nimport numpy as np\n\n'
        + constant("MEAN", mean)
        + constant("STD", std)
        + constant("WEIGHTS", weights)
        + f"BIAS = {bias:.5g}\n"
    )
    print(f"wrote {MODEL_MODULE}")


def main() -> None:
    ap = music.fit_arguments(__doc__)
    ap.set_defaults(train=[2, 3, 6, 7, 9, 10, 11, 12, 13], test=[1, 4, 5, 8, 14])
    ap.add_argument("-C", type=float, default=1.0, help="inverse L2 strength")
    ap.add_argument("--write", action="store_true", help="rewrite pipeline/tempo_level_model.py")
    args = music.parse_fit_arguments(ap)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    analysis.warm_up()
    train = [level_examples(seed, args.cache) for seed in args.train]
    x = np.concatenate([t[0] for t in train])
    y = np.concatenate([t[1] for t in train])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=args.C, max_iter=5000)
    cv = cross_val_score(model, (x - mean) / std, y, cv=10).mean()
    model.fit((x - mean) / std, y)
    report = [f"train seeds {args.train}: {len(y)} songs, {y.mean():.0%} at the faster level; 10-fold CV {cv:.3f}"]
    print(report[0])
    print(f"  the current model on them: {accuracy(current_model(x), y)}")
    for seed in args.test:
        xt, yt = level_examples(seed, args.cache)
        refit = (model.predict((xt - mean) / std) == yt).mean()
        print(
            f"held-out seed {seed}: {len(yt)} songs; level accuracy current {accuracy(current_model(xt), yt)}, "
            f"refitted {refit:.3f}"
        )
        report.append(f"held-out seed {seed}: level accuracy {refit:.3f} ({len(yt)} songs)")
    if args.write:
        write_module(mean, std, model.coef_[0], model.intercept_[0], [f"C = {args.C}; " + report[0], *report[1:]])


if __name__ == "__main__":
    main()
