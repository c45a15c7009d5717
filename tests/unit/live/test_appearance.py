"""The pure state of `live --pair-by-appearance`: empty scene, sightings, live and final pairing."""

from __future__ import annotations

import numpy as np
import pytest

from lensflow.errors import LiveError
from lensflow.live.appearance import (
    SMALL,
    EmptyScene,
    PairPool,
    SightingTracker,
    appearance,
    crop_box,
    max_weight_pairs,
    motion,
    rotations,
    shrink,
)
from lensflow.live.scenes import table


def _frames(n: int, seed: int = 0, gain: float = 0.0, patch: bool = False) -> list[np.ndarray]:
    """Noisy frames of the generated table; optionally a dark patch at (200..360, 150..300)."""
    rng = np.random.default_rng(seed)
    top = table(seed=1).astype(np.float32)
    out = []
    for _ in range(n):
        f = top.copy()
        if patch:
            f[150:300, 200:360] = (60, 40, 30)
        f = f * (1 + rng.uniform(-gain, gain)) + rng.normal(0, 2.0, f.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def scene() -> EmptyScene:
    s = EmptyScene(learn_frames=8)
    for f in _frames(8, seed=2):
        s.learn(shrink(f))
    return s


def test_empty_table_learns_then_sees_nothing_on_new_empty_frames(scene: EmptyScene) -> None:
    assert not scene.learning and scene.seen == 8
    for f in _frames(5, seed=3):
        fg = scene.foreground(shrink(f))
        assert not fg.present and fg.box is None and fg.fraction < 0.002


def test_flicker_of_the_whole_frame_is_not_an_object(scene: EmptyScene) -> None:
    # +-20 % brightness steps, far above the noise the model learnt.
    for f in _frames(10, seed=4, gain=0.2):
        assert not scene.foreground(shrink(f)).present


def test_an_object_is_found_where_it_is(scene: EmptyScene) -> None:
    fg = scene.foreground(shrink(_frames(1, seed=5, patch=True)[0]))
    assert fg.present and fg.box is not None
    sx, sy = 640 / SMALL[0], 480 / SMALL[1]
    x0, y0, x1, y1 = fg.box
    # The patch spans x 200..360 and y 150..300 of the full frame (blur widens it by a pixel).
    assert abs(x0 * sx - 200) <= 12 and abs(x1 * sx - 360) <= 12
    assert abs(y0 * sy - 150) <= 12 and abs(y1 * sy - 300) <= 12
    # The crop is square, holds the patch and stays inside the frame.
    left, top, right, bottom = crop_box(fg.box, (480, 640, 3))
    assert right - left == bottom - top
    assert left <= 200 and right >= 360 and top <= 150 and bottom >= 300
    assert left >= 0 and top >= 0 and right <= 640 and bottom <= 480


def test_an_object_too_small_to_count_is_not_present() -> None:
    s = EmptyScene(learn_frames=4, min_area=0.05)
    for f in _frames(4, seed=6):
        s.learn(shrink(f))
    f = _frames(1, seed=7)[0]
    f[200:240, 300:340] = 0  # 1600 of 307200 pixels: 0.5 %
    fg = s.foreground(shrink(f))
    assert fg.fraction > 0 and not fg.present


def test_still_learning_and_bad_settings_are_errors() -> None:
    s = EmptyScene(learn_frames=3)
    with pytest.raises(LiveError, match="learning"):
        s.foreground(np.zeros((SMALL[1], SMALL[0], 3), np.float32))
    with pytest.raises(LiveError):
        EmptyScene(learn_frames=0)
    with pytest.raises(LiveError):
        SightingTracker(min_frames=0)
    with pytest.raises(LiveError, match="min-similarity"):
        PairPool(1.5)


def test_motion_is_zero_for_the_same_scene_and_large_for_a_move() -> None:
    a, b = _frames(2, seed=8, patch=True)
    assert motion(shrink(a), shrink(b)) < 0.001
    moved = np.roll(b, 120, axis=1)
    assert motion(shrink(a), shrink(moved)) > 0.05
    assert motion(None, shrink(a)) == 1.0  # no previous frame: not steady


# ---- sightings -------------------------------------------------------------------------------


def _feed(tracker: SightingTracker, pattern: str, moved: float = 0.0):
    """Feed '1' (something there) / '0' (empty) frames; return every Step."""
    return [tracker.observe(i, i / 10, c == "1", moved) for i, c in enumerate(pattern)]


def test_a_sighting_counts_after_min_frames_and_ends_after_the_gap() -> None:
    t = SightingTracker(min_frames=3, end_gap=2)
    steps = _feed(t, "0011110000")
    closed = [s.closed for s in steps if s.closed is not None]
    assert len(closed) == 1
    s = closed[0]
    assert (s.counted, s.frames, s.start_index, s.end_index) == (True, 4, 2, 5)
    s.id = 1  # numbered when published
    assert s.message() == {"event": "sighting", "id": 1, "start_ts": 200, "end_ts": 500,
                           "frames": 4}  # fmt: skip
    # It closed on the second empty frame after it, not before.
    assert [i for i, st in enumerate(steps) if st.closed] == [7]


def test_a_short_blip_is_discarded_without_an_id() -> None:
    t = SightingTracker(min_frames=3, end_gap=2)
    steps = _feed(t, "0110001111100")
    assert [s.discarded.frames for s in steps if s.discarded] == [2]
    assert [s.closed.frames for s in steps if s.closed] == [5]
    assert t.count == 1  # only real sightings count


def test_a_short_empty_spell_inside_a_sighting_does_not_split_it() -> None:
    # A hand lifts the sock for two frames: fewer than end_gap empty frames.
    t = SightingTracker(min_frames=3, end_gap=3)
    steps = _feed(t, "1111001111000")
    closed = [s.closed for s in steps if s.closed]
    assert len(closed) == 1 and closed[0].frames == 8


def test_only_steady_frames_are_embedded_up_to_the_cap() -> None:
    t = SightingTracker(min_frames=2, end_gap=2, max_embeddings=2, steady_motion=0.01)
    moves = [0.5, 0.2, 0.0, 0.0, 0.0, 0.3]
    steps = [t.observe(i, i, True, m) for i, m in enumerate(moves)]
    assert [s.embed for s in steps] == [False, False, True, True, False, False]
    # Before the first steady frame the stillest frame so far is kept as a fallback.
    assert [s.keep_fallback for s in steps] == [True, True, False, False, False, False]


def test_the_source_ending_closes_the_open_sighting() -> None:
    t = SightingTracker(min_frames=2, end_gap=5)
    _feed(t, "0111")
    assert t.finish().closed.frames == 3  # type: ignore[union-attr]
    assert t.finish().closed is None


# ---- appearance and pairing ------------------------------------------------------------------


def test_rotations_and_appearance() -> None:
    img = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    views = rotations(img)
    assert [v.shape for v in views] == [(2, 3, 3), (3, 2, 3), (2, 3, 3), (3, 2, 3)]
    assert np.array_equal(views[2], img[::-1, ::-1])
    a = appearance(np.array([[4.0, 0.0], [0.0, 4.0]]))
    assert np.allclose(a, [np.sqrt(0.5), np.sqrt(0.5)])  # mean (2, 2) -> sqrt -> unit
    assert np.isclose(np.linalg.norm(appearance(np.random.default_rng(0).random((3, 8)))), 1)


def _v(*x: float) -> np.ndarray:
    return np.array(x)


def test_pool_pairs_the_most_similar_open_sighting_at_the_threshold() -> None:
    pool = PairPool(min_similarity=0.9)
    assert pool.add(1, _v(1, 0, 0)) is None
    assert pool.add(2, _v(0, 1, 0)) is None
    assert pool.add(3, _v(0.2, 1, 0)) is not None  # cos 0.98 with #2
    assert pool.pairs[-1].a == 2 and pool.pairs[-1].b == 3
    assert pool.pairs[-1].message() == {
        "event": "pair",
        "a": 2,
        "b": 3,
        "similarity": 0.9806,
        "final": False,
    }
    assert list(pool.open) == [1]
    # Below the threshold it waits, even when it is the best there is.
    assert pool.add(4, _v(1, 0.6, 0)) is None  # cos 0.857 with #1
    assert list(pool.open) == [1, 4]


def test_a_third_showing_waits_for_a_partner_of_its_own() -> None:
    pool = PairPool(min_similarity=0.8)
    pool.add(1, _v(1, 0))
    pool.add(2, _v(1, 0.05))
    assert [(p.a, p.b) for p in pool.pairs] == [(1, 2)]
    assert pool.add(3, _v(1, 0.02)) is None  # its look-alikes are paired already
    assert list(pool.open) == [3]
    assert pool.add(4, _v(1, 0)).a == 3  # type: ignore[union-attr]


def test_ties_go_to_the_sock_waiting_longest() -> None:
    pool = PairPool(min_similarity=0.5)
    pool.add(1, _v(1, 0))
    pool.add(2, _v(0, 1))  # cos 0 with #1: waits
    pair = pool.add(3, _v(1, 1))  # cos 0.707 with both
    assert pair is not None and pair.a == 1


def test_when_the_feed_ends_the_open_socks_pair_by_total_similarity() -> None:
    # Twins 1+2 at cos 0.82 and 3+4 at 0.84; 2 and 3 are 0.86 alike. The most similar pair
    # first (2 + 3) would leave both twins alone; the final step pairs the twins.
    cosines = {(0, 1): 0.82, (2, 3): 0.84, (1, 2): 0.86, (0, 2): 0.7, (1, 3): 0.72, (0, 3): 0.6}
    vectors = _vectors_with(cosines)
    pool = PairPool(min_similarity=0.95, final_similarity=0.8)
    for i, v in enumerate(vectors, 1):
        assert pool.add(i, v) is None  # nothing is sure enough to pair live
    made = pool.finish()
    assert [(p.a, p.b, p.final) for p in made] == [(1, 2, True), (3, 4, True)]
    assert made[0].message()["final"] is True and pool.open == {}
    assert pool.finish() == []  # nothing left


def test_the_final_step_leaves_socks_below_its_threshold_open() -> None:
    pool = PairPool(min_similarity=0.95, final_similarity=0.8)
    pool.add(1, _v(1, 0))
    pool.add(2, _v(0.7, 0.714))  # cos 0.7: a different design
    assert pool.finish() == [] and list(pool.open) == [1, 2]
    with pytest.raises(LiveError, match="--final-similarity"):
        PairPool(0.9, final_similarity=1.5)


def _vectors_with(cosines: dict[tuple[int, int], float], n: int = 4) -> np.ndarray:
    """Unit vectors whose pairwise cosines are `cosines`: rows of a Cholesky factor."""
    gram = np.eye(n)
    for (i, j), c in cosines.items():
        gram[i, j] = gram[j, i] = c
    return np.linalg.cholesky(gram)


@pytest.mark.parametrize("seed", range(40))
def test_max_weight_pairs_is_the_maximum_weight_matching_of_networkx(seed: int) -> None:
    nx = pytest.importorskip("networkx", reason="networkx comes with the [match] extra")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 13))
    x = rng.normal(size=(n, 6)) + rng.normal(size=6)  # correlated: many pairs above 0.5
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    ours = max_weight_pairs(sims, 0.5)
    graph = nx.Graph()
    graph.add_weighted_edges_from(
        (i, j, sims[i, j]) for i in range(n) for j in range(i + 1, n) if sims[i, j] >= 0.5
    )
    theirs = nx.max_weight_matching(graph)
    assert all(sims[i, j] >= 0.5 for i, j in ours)
    assert len({i for pair in ours for i in pair}) == 2 * len(ours)  # each index once
    assert sum(sims[i, j] for i, j in ours) == pytest.approx(
        sum(sims[i, j] for i, j in theirs), abs=1e-9
    )


def test_max_weight_pairs_of_a_group_too_large_to_search_is_best_first() -> None:
    from lensflow.live import appearance as ap

    n = ap.EXACT_GROUP + 2
    x = np.random.default_rng(0).normal(size=(n, 4)) + 3.0  # one large group of look-alikes
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    pairs = max_weight_pairs(sims, 0.0)
    assert len(pairs) == n // 2
    best = max((sims[i, j], i, j) for i in range(n) for j in range(i + 1, n))
    assert (best[1], best[2]) in pairs  # the most similar pair is taken first
