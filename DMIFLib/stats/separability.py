"""Class separability of learned features: MMD and cosine "Dist" of Chen et al. (2022), eq. 9–11.

For features A (class 0) and B (class 1), each of ``m`` repeats draws ``n`` rows of each set at random and
averages a pairwise statistic over the n × n pairs; the result is the mean over the repeats:

- MMD (eq. 9): | mean k(A_i, A_i') - 2 mean k(A_i, B_j) + mean k(B_j, B_j') | with the linear kernel
  k(x, y) = x · y (the paper: "the dot product of two feature vectors"). For A:A the two sides are two
  independent draws from A.
- Cosine (eq. 10): the mean cosine *distance* 1 - cos(A_i, B_j). The paper prints the mean cosine similarity,
  but calls it a distance and reads a larger Dist as better separation, which only holds for 1 - cos.
- Dist(f) = f_AB / f_AA + f_AB / f_BB (eq. 11): between-class over within-class distance; larger is better.

Each repeat draws 2n rows of each class without replacement and splits them into two disjoint halves, so that
A:A compares two *different* sets of A rows (overlapping draws would shrink f_AA and inflate Dist); A:B uses the
first half of each. When a class has fewer than 2n rows, n shrinks to half the smaller class for all three
statistics alike (the biased MMD's floor depends on n, so f_AA, f_BB and f_AB must share it).
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import normalize

N_SAMPLES = 100
"""n in eq. 9–10: rows drawn per class per repeat."""
N_REPEATS = 100
"""m in eq. 9–10: number of repeats averaged."""


def mmd_linear(x: np.ndarray, y: np.ndarray) -> float:
    """Eq. 9 for one draw with k(u, v) = u · v: the n² double sums reduce exactly to |mean x - mean y|²."""
    return float(np.sum((x.mean(axis=0) - y.mean(axis=0)) ** 2))


def cosine_distance(x: np.ndarray, y: np.ndarray) -> float:
    """1 - eq. 10 for one draw: 1 - mean over pairs of cos(x_i, y_j) = 1 - (mean of unit x) · (mean of unit y).

    Zero rows count as cosine 0 (as in ``sklearn.metrics.pairwise.cosine_similarity``).
    """
    return float(1.0 - normalize(x).mean(axis=0) @ normalize(y).mean(axis=0))


_STATISTICS = {"mmd": mmd_linear, "cosine": cosine_distance}


def _draw_halves(rng: np.random.Generator, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    chosen = rows[rng.choice(len(rows), size=2 * n, replace=False)]
    return chosen[:n], chosen[n:]


def class_distances(features, labels, n: int = N_SAMPLES, m: int = N_REPEATS,
                    seed: int = 0) -> dict[str, dict[str, float]]:
    """f_AA, f_BB, f_AB and Dist for f in {"mmd", "cosine"}.

    ``features``: (N, F) float, one row per slice or patient; ``labels``: (N,) 0/1 (A = 0, B = 1).
    Returns ``{"mmd": {"aa", "bb", "ab", "dist", "n", "m"}, "cosine": {...}}`` with the n actually used.
    Dist is NaN when a within-class distance is 0.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be (N, F) with N = {y.shape[0]} labels, got shape {x.shape}")
    a, b = x[y == 0], x[y == 1]
    if len(a) < 4 or len(b) < 4:
        raise ValueError(f"separability needs at least 4 rows per class, got {len(a)} and {len(b)}")
    n = min(n, len(a) // 2, len(b) // 2)
    rng = np.random.default_rng(seed)
    sums = {name: {"aa": 0.0, "bb": 0.0, "ab": 0.0} for name in _STATISTICS}
    for _ in range(m):
        (a1, a2), (b1, b2) = _draw_halves(rng, a, n), _draw_halves(rng, b, n)
        for name, fn in _STATISTICS.items():
            sums[name]["aa"] += fn(a1, a2)
            sums[name]["bb"] += fn(b1, b2)
            sums[name]["ab"] += fn(a1, b1)
    out = {}
    for name, s in sums.items():
        aa, bb, ab = s["aa"] / m, s["bb"] / m, s["ab"] / m
        dist = ab / aa + ab / bb if aa > 0 and bb > 0 else float("nan")
        out[name] = {"aa": float(aa), "bb": float(bb), "ab": float(ab), "dist": float(dist), "n": n, "m": m}
    return out
