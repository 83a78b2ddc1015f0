"""t-SNE embeddings of learned features (scikit-learn), for the report's feature plots."""

from __future__ import annotations

import numpy as np
from sklearn.manifold import TSNE


def tsne_embedding(features, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of ``features`` (N, F) -> (N, 2); the perplexity is capped below N / 3 for small sets.

    Features are standardised per column first (nets' feature scales differ by orders of magnitude).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"t-SNE needs features of shape (N >= 4, F), got {x.shape}")
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    perplexity = min(perplexity, max(1.0, (x.shape[0] - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
