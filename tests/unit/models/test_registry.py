"""Registry-driven tests: every registered model builds, runs forward/backward and fits its info."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from lensflow.errors import ModelError
from lensflow.models import create_model, get_model_info, list_models, load_weights

# Rough parameter counts (millions, 10-class head) from the reference architectures.
EXPECTED_PARAMS_M = {
    "efficientnet_lite0": 3.4,
    "efficientnet_lite2": 4.8,
    "efficientnet_lite_ensemble": 8.2,  # Lite0 + Lite2 without their ImageNet heads
    "resnet18": 11.2,
    "resnet34": 21.3,
    "resnet50": 23.5,
    "resnet101": 42.5,
    "resnet152": 58.2,
    "resnet20": 0.27,
    "resnet32": 0.47,
    "resnet44": 0.66,
    "resnet56": 0.86,
    "resnet110": 1.73,
    "cnn1": 0.69,
    "cnn3": 0.24,
    "cnn4": 1.22,
}


def test_every_model_has_an_expected_size() -> None:
    assert sorted(EXPECTED_PARAMS_M) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_shapes_and_size(name: str) -> None:
    torch.manual_seed(0)
    info = get_model_info(name)
    model = create_model(name, num_classes=7, pretrained=False)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params / 1e6 == pytest.approx(EXPECTED_PARAMS_M[name], rel=0.05)
    # Large ImageNet-style nets run at a small size: the test is about wiring, not resolution.
    pre = info.preprocess
    size = pre.input_size if pre.input_size <= 64 else 64
    x = torch.randn(2, pre.channels, size, size)
    model.train()
    feats = model.forward_features(x)
    assert feats.shape == (2, info.feature_dim)
    logits = model.forward_head(feats)
    assert logits.shape == (2, 7)
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.preprocess == pre
    assert isinstance(getattr(model, model.head_keys[0].split(".")[0]), torch.nn.Linear)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet19'.*resnet18.*Known models"):
        create_model("resnet19", 3)


def test_unknown_model_kwarg_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"image_sise.*image_size"):
        create_model("cnn1", 3, image_sise=32)


def test_kwargs_change_preprocess_and_shapes() -> None:
    model = create_model("resnet20", 4, in_channels=1, image_size=40)
    assert model.preprocess.channels == 1 and model.preprocess.input_size == 40
    assert model(torch.randn(1, 1, 40, 40)).shape == (1, 4)


def test_model_records_every_kwarg_so_a_new_default_cannot_change_a_saved_model() -> None:
    """Checkpoints and feature caches key on model_kwargs: defaults must be in it."""
    model = create_model("efficientnet_lite_ensemble", 2, pretrained=False, framing="portrait")
    assert model.model_kwargs == {**get_model_info(model.model_name).default_kwargs,
                                  "framing": "portrait"}  # fmt: skip
    assert model.model_kwargs["tap_pool"] == "bands"


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_lite_imagenet_weights_recognise_a_cat(name: str) -> None:
    """The bundled weights are really ImageNet-trained: the Chelsea photo is a cat (281-285)."""
    skimage_data = pytest.importorskip("skimage.data")
    model = create_model(name, num_classes=1000).eval()
    x = torch.from_numpy(model.preprocess(skimage_data.chelsea()))[None]
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert set(top5) & set(range(281, 286)), top5
    assert top5[0] in range(281, 286)


def test_weights_round_trip_torch_and_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    src = create_model("resnet20", 3, pretrained=False)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pt")
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    for name in ("w.pt", "w.safetensors"):
        dst = create_model("resnet20", 3, pretrained=False, weights=tmp_path / name).eval()
        assert torch.allclose(src.eval()(x), dst(x), atol=1e-6)


def test_weights_with_other_head_load_the_backbone(tmp_path) -> None:
    src = create_model("cnn1", 10, pretrained=False)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = create_model("cnn1", 3, pretrained=False)
    skipped = load_weights(dst, tmp_path / "w.pt")
    assert sorted(skipped) == ["fc.bias", "fc.weight"]
    assert torch.equal(dst.conv[0].weight, src.conv[0].weight)


def test_incompatible_weights_name_the_fix(tmp_path) -> None:
    torch.save(create_model("resnet20", 3).state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match="does not fit model resnet32"):
        create_model("resnet32", 3, weights=tmp_path / "w.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights"):
        create_model("resnet20", 3, weights=tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="not found"):
        create_model("resnet20", 3, weights=tmp_path / "missing.pt")


def test_lite0_exports_to_onnx_with_matching_outputs() -> None:
    ort = pytest.importorskip("onnxruntime")

    class Both(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = self.m.forward_features(x)
            return self.m.forward_head(f), f

    model = create_model("efficientnet_lite0", 4).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        Both(model).eval(),
        (torch.randn(1, 3, 224, 224),),
        buf,
        dynamo=False,
        input_names=["input"],
        output_names=["logits", "features"],
        dynamic_axes={"input": {0: "batch"}},
    )
    x = torch.randn(3, 3, 224, 224)
    logits, feats = ort.InferenceSession(buf.getvalue()).run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert logits.shape == (3, 4) and feats.shape == (3, 1280)
    np.testing.assert_allclose(logits, ref, atol=1e-4)


def test_lite0_multiscale_and_mirror_features() -> None:
    """multiscale appends the pooled last block (320); flip_tta averages with the mirror image."""
    torch.manual_seed(0)
    plain = create_model("efficientnet_lite0", 3).eval()
    both = create_model("efficientnet_lite0", 3, multiscale=True, flip_tta=True).eval()
    assert both.feature_dim == 1600 and both._fc.in_features == 1600
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        f = both.forward_features(x)
        mirrored = both.forward_features(x.flip(3))
        base = plain.forward_features(x)
    assert torch.allclose(f, mirrored, atol=1e-4)  # mirror-invariant by construction
    plain.flip_tta = True
    with torch.no_grad():
        assert torch.allclose(f[:, :1280], plain.forward_features(x), atol=1e-5)
    assert not torch.allclose(base, f[:, :1280], atol=1e-3)


def test_lite0_stage_pyramid_features() -> None:
    """Quick mode's features: 3 stage ends (banded or not) + head, each L2-normalised."""
    torch.manual_seed(0)
    bands = create_model("efficientnet_lite0", 3, pyramid="bands", flip_tta=True).eval()
    mean = create_model("efficientnet_lite0", 3, pyramid="mean").eval()
    assert (bands.feature_dim, mean.feature_dim) == (1280 + 3 * 624, 1280 + 624)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        f = bands.forward_features(x)
        assert torch.allclose(f, bands.forward_features(x.flip(3)), atol=1e-4)
        g = mean.forward_features(x)
    for piece in (g[:, :112], g[:, 112:304], g[:, 304:624], g[:, 624:]):
        assert torch.allclose(piece.norm(dim=1), torch.ones(2), atol=1e-4)
    head = f[:, -1280:].norm(dim=1)  # the mean of two unit vectors (image and mirror image)
    assert (head <= 1 + 1e-5).all() and (head > 0.5).all()
    with pytest.raises(ModelError, match="pyramid must be one of"):
        create_model("efficientnet_lite0", 3, pretrained=False, pyramid="max")
    with pytest.raises(ModelError, match="leave multiscale off"):
        create_model("efficientnet_lite0", 3, pretrained=False, pyramid="mean", multiscale=True)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # band bounds: constants
def test_ensemble_features_export_to_onnx_and_ignore_mirroring() -> None:
    """The ensemble is one ONNX graph on one letterboxed input: views, mirrors and taps inside."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("efficientnet_lite_ensemble", 3, pretrained=False).eval()
    pre = model.preprocess
    assert (pre.crop, pre.input_size) == ("pad", 352)
    x = torch.randn(2, 3, 352, 352)
    with torch.no_grad():
        f = model.forward_features(x)
        assert torch.allclose(f, model.forward_features(x.flip(3)), atol=1e-4)
        # Each member: 4 L2-normalised pieces (3 banded stage ends + head), mirror-averaged.
        lite0_taps = 3 * sum(model.members[0]._blocks[i]._block_args.output_filters
                             for i in model.taps[0])  # fmt: skip
        assert f.shape == (2, model.feature_dim) and model.feature_dim == 6472
        head0 = f[:, lite0_taps : lite0_taps + 1280]
        assert (head0.norm(dim=1) <= 1 + 1e-5).all() and (head0.norm(dim=1) > 0.5).all()
        ref = model(x).numpy()
    buf = io.BytesIO()
    torch.onnx.export(model, (x[:1],), buf, dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}})  # fmt: skip
    logits = ort.InferenceSession(buf.getvalue()).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(logits, ref, atol=1e-4)


def test_ensemble_framing_window_is_the_photo_without_its_padding() -> None:
    from lensflow.models.ensemble import framing_of
    from lensflow.preprocess import to_pil

    assert framing_of([(300, 400)] * 3 + [(400, 300)]) == "portrait"
    assert framing_of([(640, 480)] * 2) == "landscape"
    assert framing_of([(500, 480), (300, 400), (400, 300)]) == "square"
    assert framing_of([]) == "square"
    with pytest.raises(ModelError, match="framing must be one of"):
        create_model("efficientnet_lite_ensemble", 2, pretrained=False, framing="wide")
    photo = np.full((400, 300, 3), 200, np.uint8)  # a 3:4 portrait photo, one colour
    for framing, shape in [("portrait", (352, 264)), ("landscape", (264, 352)),
                           ("square", (352, 352))]:  # fmt: skip
        model = create_model("efficientnet_lite_ensemble", 2, pretrained=False, framing=framing)
        x = torch.from_numpy(model.preprocess(to_pil(photo)))[None]
        v = model.view(x)
        assert v.shape == (2, 3, *shape)  # the window and its mirror image
        if framing == "portrait":  # exactly the photo: no padding left in the window
            assert torch.allclose(v, torch.full_like(v, (200 - 127.5) / 127.5))


def test_band_max_pools_top_middle_and_bottom_rows() -> None:
    from lensflow.models.efficientnet import band_max

    rows = torch.arange(11.0).reshape(1, 1, 11, 1).expand(2, 4, 11, 5)  # value = row number
    out = band_max(rows)
    assert out.shape == (2, 12)
    # rows 0-3, 3-7 and 7-10: thirds of 11 rows, overlapping by one where 11 does not divide
    assert out[0].reshape(3, 4)[:, 0].tolist() == [3.0, 7.0, 10.0]
    assert band_max(torch.randn(1, 2, 1, 3)).shape == (1, 6)  # one row: no band is empty


def test_ensemble_tap_pooling_changes_only_the_stage_pieces() -> None:
    torch.manual_seed(0)
    bands = create_model("efficientnet_lite_ensemble", 2, pretrained=False).eval()
    mean = create_model("efficientnet_lite_ensemble", 2, pretrained=False, tap_pool="mean").eval()
    mean.load_state_dict({k: v for k, v in bands.state_dict().items() if not k.startswith("_fc")},
                         strict=False)  # fmt: skip
    assert (bands.feature_dim, mean.feature_dim) == (6472, 3864)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        fb, fm = bands.forward_features(x), mean.forward_features(x)
    taps_b, taps_m = 3 * 624, 624  # Lite0's stage ends: 112 + 192 + 320 channels
    assert torch.allclose(fb[:, taps_b : taps_b + 1280], fm[:, taps_m : taps_m + 1280], atol=1e-6)
    assert not torch.allclose(fb[:, :taps_m], fm[:, :taps_m], atol=1e-3)
    with pytest.raises(ModelError, match="tap_pool must be one of"):
        create_model("efficientnet_lite_ensemble", 2, pretrained=False, tap_pool="max")
