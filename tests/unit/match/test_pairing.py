"""Pure pairing: cosine matrix, maximum-weight one-to-one matching, threshold, contact sheet."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lensflow.errors import MatchError
from lensflow.match.matcher import MatchConfig
from lensflow.match.pairing import best_pairs, cosine_matrix, l2_normalise
from lensflow.match.sheet import contact_sheet


def sim_matrix(entries: dict[tuple[int, int], float], n: int) -> np.ndarray:
    s = np.full((n, n), 0.1)
    np.fill_diagonal(s, 1.0)
    for (i, j), v in entries.items():
        s[i, j] = s[j, i] = v
    return s


def test_cosine_matrix_is_scale_invariant_and_safe_for_zero_rows():
    x = np.array([[1.0, 0.0], [10.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    s = cosine_matrix(x)
    assert s[0, 1] == pytest.approx(1.0)
    assert s[0, 2] == pytest.approx(0.0)
    assert not np.isnan(s).any()
    assert np.allclose(np.linalg.norm(l2_normalise(x)[:3], axis=1), 1.0)
    with pytest.raises(MatchError, match="shape"):
        cosine_matrix(np.zeros(3))


def test_every_photo_is_used_at_most_once():
    # 1 is the best partner of both 0 and 2: an assignment would pair 0->1 and 2->1.
    s = sim_matrix({(0, 1): 0.9, (1, 2): 0.85, (2, 3): 0.6, (0, 3): 0.2}, 4)
    pairing = best_pairs(s, min_similarity=0.3)
    used = [i for a, b, _ in pairing.pairs for i in (a, b)]
    assert len(used) == len(set(used))
    assert pairing.pairs == [(0, 1, 0.9), (2, 3, 0.6)]
    assert pairing.singletons == []


def test_matching_maximises_total_similarity_not_greedy():
    # Greedy takes 1-2 (0.9) and strands 0 and 3; the optimum is 0-1 + 2-3 (0.85 + 0.8).
    s = sim_matrix({(1, 2): 0.9, (0, 1): 0.85, (2, 3): 0.8}, 4)
    pairing = best_pairs(s, min_similarity=0.5)
    assert [(a, b) for a, b, _ in pairing.pairs] == [(0, 1), (2, 3)]


def test_pairs_under_the_threshold_become_singletons():
    s = sim_matrix({(0, 1): 0.9, (2, 3): 0.4}, 5)
    pairing = best_pairs(s, min_similarity=0.45)
    assert pairing.pairs == [(0, 1, 0.9)]
    assert pairing.singletons == [2, 3, 4]
    # lowering the threshold admits the weaker pair, best first
    assert [p[:2] for p in best_pairs(s, min_similarity=0.35).pairs] == [(0, 1), (2, 3)]


def test_odd_one_out_is_a_singleton():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64))
    x = np.concatenate(
        [centres, centres + rng.normal(scale=0.1, size=(3, 64)), rng.normal(size=(1, 64))]
    )
    pairing = best_pairs(cosine_matrix(x), min_similarity=0.5)
    assert sorted((a, b) for a, b, _ in pairing.pairs) == [(0, 3), (1, 4), (2, 5)]
    assert pairing.singletons == [6]


def test_match_config_validates():
    with pytest.raises(MatchError, match=r"-1\.\.1, got 1\.5"):
        MatchConfig(photos=".", min_similarity=1.5)
    assert MatchConfig(photos="/x/drawer").out_dir.name == "drawer-pairs"


def test_contact_sheet_draws_pairs_and_singletons():
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    images = [Image.new("RGB", (300, 200), c) for c in colours]
    sheet = contact_sheet(images, ["a.jpg", "b.jpg", "c.jpg"], [(0, 1, 0.8)], [2], 0.45)
    arr = np.asarray(sheet)
    for c in colours:  # each photo appears on the sheet
        assert (np.abs(arr.astype(int) - c).sum(axis=2) < 10).sum() > 1000
