"""The Predictor on a real bundle: inputs of every kind, batching, threads, top-k, embeddings."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lensflow.errors import BundleError
from lensflow.predictor import Prediction, Predictor, default_threads, softmax


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    return Predictor.from_bundle(tiny_bundle)


def test_importing_and_using_the_predictor_never_imports_torch_nor_export(
    tiny_bundle, sample_images
):
    code = (
        "import sys, json\n"
        "from lensflow.predictor import Predictor\n"
        f"p = Predictor.from_bundle({str(tiny_bundle)!r})\n"
        f"pred = p.predict([{str(sample_images[0])!r}])[0]\n"
        "export = [m for m in sys.modules if m.startswith('lensflow.export')]\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'export': export, "
        "'label': pred.label}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["torch"] is False
    assert result["export"] == []  # the bundle format lives below the export stage
    assert result["label"] in Predictor.from_bundle(tiny_bundle).classes


def test_bytes_path_pil_and_numpy_give_the_same_probabilities(predictor, sample_images):
    path = sample_images[0]
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data))
    arr = np.asarray(Image.open(path).convert("RGB"))
    probs = [predictor.predict_proba([x])[0] for x in (path, str(path), data, pil, arr)]
    for p in probs[1:]:
        np.testing.assert_allclose(p, probs[0], atol=1e-6)
    assert probs[0].shape == (len(predictor.classes),)
    assert abs(float(probs[0].sum()) - 1.0) < 1e-5


def test_batching_does_not_change_results(tiny_bundle, sample_images):
    one = Predictor.from_bundle(tiny_bundle, batch_size=1).predict_proba(sample_images)
    many = Predictor.from_bundle(tiny_bundle, batch_size=32).predict_proba(sample_images)
    assert one.shape == (len(sample_images), len(many[0]))
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_threads_default_to_all_cores_and_are_configurable(tiny_bundle):
    default = Predictor.from_bundle(tiny_bundle)
    assert default.threads == default_threads()
    assert default.session.get_session_options().intra_op_num_threads == default_threads()
    one = Predictor.from_bundle(tiny_bundle, threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(BundleError, match="threads"):
        Predictor.from_bundle(tiny_bundle, threads=0)


def test_predict_returns_sorted_top_k_consistent_with_proba(predictor, sample_images):
    proba = predictor.predict_proba(sample_images)
    preds = predictor.predict(sample_images, top_k=3)
    assert len(preds) == len(sample_images)
    for row, pred in zip(proba, preds, strict=True):
        assert isinstance(pred, Prediction)
        assert pred.index == int(row.argmax())
        assert pred.label == predictor.classes[pred.index]
        assert pred.probability == pytest.approx(float(row.max()), abs=1e-6)
        probs = [p for _, p in pred.top_k]
        assert len(pred.top_k) == 3 and probs == sorted(probs, reverse=True)
        assert pred.top_k[0] == (pred.label, pred.probability)
    # top_k larger than the number of classes is clamped, not an error
    assert len(predictor.predict(sample_images[:1], top_k=99)[0].top_k) == len(predictor.classes)
    with pytest.raises(BundleError, match="top_k"):
        predictor.predict(sample_images[:1], top_k=0)


def test_single_image_and_numpy_batch_inputs(predictor, sample_images):
    single = predictor.predict(sample_images[0])
    assert len(single) == 1
    frames = np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize((320, 240))) for p in sample_images[:2]]
    )
    assert predictor.predict_proba(frames).shape == (2, len(predictor.classes))
    assert predictor.predict_proba([]).shape == (0, len(predictor.classes))


def test_embed_returns_pooled_features(predictor, sample_images):
    feats = predictor.embed(sample_images[:3])
    dim = next(o for o in predictor.session.get_outputs() if o.name == "features").shape[1]
    assert feats.dtype == np.float32 and feats.shape == (3, dim) and dim >= 64
    assert np.isfinite(feats).all() and feats.std() > 0
    # the same image embeds identically; different images differ
    again = predictor.embed(sample_images[:1])
    np.testing.assert_allclose(again[0], feats[0], atol=1e-5)
    assert not np.allclose(feats[0], feats[1])


def test_predict_arrays_matches_image_path(predictor, sample_images):
    x = predictor.preprocess_images(sample_images[:2])
    np.testing.assert_allclose(
        predictor.predict_arrays(x), predictor.predict_proba(sample_images[:2]), atol=1e-6
    )
    with pytest.raises(BundleError, match="shape"):
        predictor.predict_arrays(np.zeros((1, 3, 100, 100), np.float32))


def test_undecodable_bytes_raise_a_clear_error(predictor):
    from lensflow.errors import LensflowError

    with pytest.raises(LensflowError, match="cannot decode"):
        predictor.predict([b"not an image"])


def test_softmax_is_stable_for_large_logits():
    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]], np.float32))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]], atol=1e-6)


# -- open-set score ---------------------------------------------------------------------------------
def wall_rgb(seed: int) -> np.ndarray:
    from lensflow.live.video import wall_frame

    return np.ascontiguousarray(wall_frame(seed)[:, :, ::-1])


def test_every_prediction_carries_unknown_and_its_score(predictor, sample_images):
    assert predictor.open_set is not None  # export writes the score for every bundle
    preds = predictor.predict([*sample_images, wall_rgb(0)], top_k=2)
    d = preds[0].to_dict()
    assert isinstance(d["unknown"], bool) and isinstance(d["ood_score"], float)
    threshold = predictor.card["open_set"]["threshold"]
    for p in preds:
        assert p.unknown == (p.ood_score > threshold)
    # the same numbers through the array path (the server's and live's)
    proba, scores = predictor.classify_arrays(predictor.preprocess_images(sample_images))
    np.testing.assert_allclose(scores, [p.ood_score for p in preds[:-1]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba, predictor.predict_proba(sample_images), atol=1e-6)
    assert preds[-1].ood_score > max(p.ood_score for p in preds[:-1])  # a wall is further away


def test_bundles_without_an_open_set_score_still_load_and_predict(
    tiny_bundle, tmp_path, sample_images
):
    old = tmp_path / "old-bundle"
    shutil.copytree(tiny_bundle, old)
    (old / "openset.npz").unlink()
    card = json.loads((old / "card.json").read_text())
    del card["open_set"]
    (old / "card.json").write_text(json.dumps(card))
    p = Predictor.from_bundle(old)
    assert p.open_set is None
    pred = p.predict(sample_images[:1])[0]
    assert pred.unknown is False and pred.ood_score is None
    assert pred.to_dict()["unknown"] is False and pred.to_dict()["ood_score"] is None
    assert p.classify_arrays(p.preprocess_images(sample_images[:1]))[1] is None


def test_a_damaged_open_set_file_is_a_clear_bundle_error(tiny_bundle, tmp_path):
    bad = tmp_path / "bad-bundle"
    shutil.copytree(tiny_bundle, bad)
    (bad / "openset.npz").write_bytes(b"garbage")
    with pytest.raises(BundleError, match=r"cannot read open-set statistics.*re-export"):
        Predictor.from_bundle(bad)
