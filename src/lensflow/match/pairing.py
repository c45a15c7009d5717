"""Pure pairing: embeddings -> cosine similarities -> the best one-to-one matching.

A pairing is a matching in a general graph (any photo may pair with any other), not an
assignment between two sets: `linear_sum_assignment` on the symmetric matrix can return a->b and
b->c. We take the maximum-weight matching (Edmonds' blossom algorithm, networkx) over the edges at
or above `min_similarity`: the pairs with the largest total similarity, each photo used at most
once. Photos left without a partner are singletons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lensflow.errors import MatchError


@dataclass(frozen=True)
class Pairing:
    pairs: list[tuple[int, int, float]]  # (i, j, cosine similarity), i < j, best first
    singletons: list[int]  # indices without a partner, in input order


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero instead of becoming NaN)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def cosine_matrix(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) features -> (N, N) cosine similarities."""
    if embeddings.ndim != 2:
        raise MatchError(f"embeddings must be (N, D), got shape {embeddings.shape}")
    unit = l2_normalise(embeddings)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def best_pairs(similarity: np.ndarray, min_similarity: float) -> Pairing:
    """Maximum-weight one-to-one matching on `similarity`, using only edges >= min_similarity."""
    import networkx as nx

    n = similarity.shape[0]
    if similarity.shape != (n, n):
        raise MatchError(f"similarity must be square, got shape {similarity.shape}")
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    rows, cols = np.triu_indices(n, k=1)
    keep = similarity[rows, cols] >= min_similarity
    # Weights are the cosines themselves: the matching maximises the total similarity (an edge
    # with a negative cosine is never worth taking, whatever min_similarity allows).
    graph.add_weighted_edges_from(
        (int(i), int(j), float(similarity[i, j]))
        for i, j in zip(rows[keep], cols[keep], strict=True)
    )
    matching = nx.max_weight_matching(graph, maxcardinality=False)
    pairs = sorted(
        ((min(a, b), max(a, b), float(similarity[a, b])) for a, b in matching),
        key=lambda p: (-p[2], p[0]),
    )
    paired = {i for a, b, _ in pairs for i in (a, b)}
    return Pairing(pairs, [i for i in range(n) if i not in paired])
