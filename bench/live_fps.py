"""End-to-end frames/s of `lensflow live`: decode -> classify -> publish to a local Mosquitto.

Target (issue 6, 2-core CPU, 640x480 video): >= 15 frames/s with the fp32 and int8 bundles.
DeepLens, the camera of the seed story, classified 3-4 frames/s.

Baseline, in the same run: the naive loop people write first, one frame at a time in one thread:
cv2 read -> BGR->RGB -> PIL -> `Predictor.predict` (PIL resize + bicubic crop) -> paho publish.
The pipeline: `run_live` (a reader thread decoding and applying the bundle's Preprocess while
onnxruntime classifies the previous frame; MqttClient's sender thread publishing) with every frame classified.

The classifier: EfficientNet-Lite0 (ImageNet weights) with a logistic-regression head fitted on
the bundled clothing sample, exported by lensflow's exporter (fp32, and static int8 calibrated on
the sample). The video: 640x480 mp4v made from clothing-small validation photos (the bundled
sample when ../shared is absent).

    .venv/bin/python bench/live_fps.py [--frames 240] [--repeats 3] [--bundle B] [--int8-bundle B]

Prints one JSON line (medians over the repeats).

`--pair-by-appearance` (issue 19) measures that mode instead: a 640x480 30 fps mp4v video of the
SockSort photos laid on a generated table (2 s empty, then each of the 12 photos of two designs'
first two photos, 1.5 s on the table with 0.7 s of empty table between), through `run_pairing` publishing to
Mosquitto. Baseline, same run: every frame through the backbone (one view, the whole frame),
the cost of telling "empty" from the embeddings alone without the pixel-space test first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fixtures.mqtt: the same Mosquitto launcher the tests use
SAMPLE = ROOT / "examples" / "clothing-sample"
SHARED = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"


def build_bundles(out: Path, int8: bool) -> dict[str, Path]:
    """fp32 (and int8) bundles of Lite0 + a logistic head fitted on the sample's train split."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from lensflow.export.exporter import export_model
    from lensflow.models import create_model

    torch.set_num_threads(os.cpu_count() or 1)
    classes = sorted(d.name for d in (SAMPLE / "train").iterdir() if d.is_dir())
    model = create_model("efficientnet_lite0", len(classes), pretrained=True).eval()
    pp = model.preprocess
    paths = [p for i, c in enumerate(classes) for p in sorted((SAMPLE / "train" / c).glob("*.jpg"))]
    labels = [
        i for i, c in enumerate(classes) for _ in sorted((SAMPLE / "train" / c).glob("*.jpg"))
    ]
    x = np.stack([pp(p) for p in paths]).astype(np.float32)
    with torch.no_grad():
        feats = model.forward_features(torch.from_numpy(x)).numpy()
    clf = LogisticRegression(C=0.5, max_iter=2000).fit(feats, labels)
    with torch.no_grad():
        model._fc.weight.copy_(torch.from_numpy(clf.coef_.astype(np.float32)))
        model._fc.bias.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))
    card = {"model": "efficientnet_lite0", "metrics": {}, "dataset_hash": None}
    bundles = {"fp32": export_model(model, classes, pp, out / "fp32", x[:8], card=card, quiet=True)}
    if int8:
        bundles["int8"] = export_model(
            model, classes, pp, out / "int8", x[:8], card=card, calibration_x=x, quiet=True
        )
    return bundles


def make_video(path: Path, frames: int) -> Path:
    from lensflow.live.video import photo_frames, write_video

    folder = SHARED if SHARED.is_dir() else SAMPLE / "validation"
    photos = sorted(folder.rglob("*.jpg"))
    step = max(1, len(photos) // max(1, frames // 4))
    chosen = photos[::step][: max(1, frames // 4)]
    # 4 frames per photo: the classifier sees a changing scene, the decoder a real mp4v stream.
    return write_video(photo_frames(chosen, (640, 480), repeat=4), path, fps=30)


def naive_fps(bundle: Path, video: Path, url: str, threads: int | None) -> tuple[float, int]:
    """One thread, one frame at a time: cv2 -> PIL -> Predictor.predict -> paho publish."""
    import cv2
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from PIL import Image

    from lensflow.messaging import parse_mqtt_url
    from lensflow.predictor import Predictor

    predictor = Predictor.from_bundle(bundle, threads=threads)
    u = parse_mqtt_url(url)
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect(u.host, u.port)
    client.loop_start()
    cap = cv2.VideoCapture(str(video))
    n = 0
    start = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        pred = predictor.predict([Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))])[0]
        msg = {"image": pred.label, "probability": pred.probability * 100, "frame": n}
        client.publish("bench", json.dumps(msg))
        n += 1
    seconds = time.perf_counter() - start
    cap.release()
    client.loop_stop()
    client.disconnect()
    return n / seconds, n


def pipeline_fps(
    bundle: Path, video: Path, url: str, threads: int | None
) -> tuple[float, int, int]:
    from lensflow.live.loop import LiveConfig, MqttSink, run_live
    from lensflow.predictor import Predictor

    predictor = Predictor.from_bundle(bundle, threads=threads)
    config = LiveConfig(bundle=str(bundle), source=str(video), mqtt=url, topic="bench")
    sink = MqttSink(url, "bench", qos=0)
    start = time.perf_counter()
    summary = run_live(config, predictor, [sink])  # closes (flushes) the sink
    seconds = time.perf_counter() - start
    return summary.classified / seconds, summary.classified, summary.sinks["mqtt_published"]


SOCKS = ROOT.parent / "shared" / "datasets" / "socks-sample"


def make_sock_video(path: Path) -> tuple[Path, int]:
    """Two photos of each design, one after another on a table, 30 fps; returns (path, shows)."""
    from lensflow.live.scenes import Show, show_frames
    from lensflow.live.video import write_video

    if not SOCKS.is_dir():
        sys.exit(f"{SOCKS} not found (the shared datasets beside the project)")
    photos = [p for d in sorted(SOCKS.iterdir()) for p in sorted(d.glob("*.jpg"))[:2]]
    shows = [Show(None, 60)] + [s for p in photos for s in (Show(p, 45), Show(None, 20))]
    return write_video(show_frames(shows), path, fps=30), len(photos)


def pair_fps(video: Path, url: str, threads: int | None) -> dict:
    from lensflow.live.loop import MqttSink
    from lensflow.live.pair_loop import PairConfig, embedding_predictor, run_pairing

    config = PairConfig(bundle=None, source=str(video), mqtt=url, threads=threads)
    predictor = embedding_predictor(config)
    sink = MqttSink(url, config.topic, qos=0)
    start = time.perf_counter()
    summary = run_pairing(config, predictor, [sink])  # waits for the last embeddings too
    seconds = time.perf_counter() - start
    return {
        "fps": summary.classified / seconds,
        "frames": summary.classified,
        "sightings": summary.sightings,
        "pairs": len(summary.pairs),
        "embedded_frames": summary.embedded,
        "published": summary.sinks["mqtt_published"],
    }


def embed_every_frame_fps(video: Path, url: str, threads: int | None, frames: int) -> float:
    """Baseline: cv2 read -> RGB -> backbone embedding of the whole frame -> publish, per frame."""
    import cv2
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from lensflow.export import backbone_bundle
    from lensflow.messaging import parse_mqtt_url
    from lensflow.predictor import Predictor

    predictor = Predictor.from_bundle(backbone_bundle("efficientnet_lite0"), threads=threads)
    u = parse_mqtt_url(url)
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect(u.host, u.port)
    client.loop_start()
    cap = cv2.VideoCapture(str(video))
    n = 0
    start = time.perf_counter()
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        feature = predictor.embed([cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)])[0]
        client.publish("bench", json.dumps({"frame": n, "norm": float(np.linalg.norm(feature))}))
        n += 1
    seconds = time.perf_counter() - start
    cap.release()
    client.loop_stop()
    client.disconnect()
    return n / seconds


def pair_main(args: argparse.Namespace, broker_url: str, tmp: Path) -> dict:
    video, shows = make_sock_video(tmp / "socks.mp4")
    pair_fps(video, broker_url, args.threads)  # warm-up (page cache, ORT, backbone cache)
    pipe, naive, last = [], [], {}
    for _ in range(args.repeats):
        last = pair_fps(video, broker_url, args.threads)
        pipe.append(last["fps"])
        # The baseline on the first 240 frames (it is slow; frames/s is what is compared).
        naive.append(embed_every_frame_fps(video, broker_url, args.threads, 240))
    p, b = statistics.median(pipe), statistics.median(naive)
    return {
        "mode": "pair_by_appearance",
        "pipeline_fps": round(p, 1),
        "embed_every_frame_fps": round(b, 1),
        "speedup": round(p / b, 2),
        "pipeline_runs": [round(v, 1) for v in pipe],
        "baseline_runs": [round(v, 1) for v in naive],
        "shows": shows,
        **{k: v for k, v in last.items() if k != "fps"},
        "meets_15fps": p >= 15.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=240, help="video length (4 frames per photo)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bundle", type=Path, help="fp32 bundle (default: build one)")
    ap.add_argument("--int8-bundle", type=Path, help="int8 bundle (default: build one)")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    ap.add_argument("--pair-by-appearance", action="store_true", help="measure that mode instead")
    args = ap.parse_args()

    from tests.fixtures.mqtt import Broker, free_port, mosquitto_path

    exe = mosquitto_path()
    if exe is None:
        sys.exit("mosquitto not installed (Debian package mosquitto; `make test` installs it)")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.pair_by_appearance:
            broker = Broker(exe=exe, workdir=tmp, port=free_port())
            broker.start()
            try:
                result = pair_main(args, broker.url, tmp)
            finally:
                broker.stop()
            print(json.dumps({"bench": "live_fps", "video": "640x480 mp4v 30 fps",
                              "threads": args.threads or os.cpu_count(),
                              "cpus": os.cpu_count(), **result}))  # fmt: skip
            return
        bundles: dict[str, Path] = {}
        if args.bundle:
            bundles["fp32"] = args.bundle
        if args.int8_bundle:
            bundles["int8"] = args.int8_bundle
        if not bundles:
            bundles = build_bundles(tmp / "bundles", int8=not args.no_int8)
        video = make_video(tmp / "bench.mp4", args.frames)
        broker = Broker(exe=exe, workdir=tmp, port=free_port())
        broker.start()
        results: dict[str, dict] = {}
        try:
            for precision, bundle in bundles.items():
                naive_fps(bundle, video, broker.url, args.threads)  # warm-up (page cache, ORT)
                pipe, naive, frames, published = [], [], 0, 0
                for _ in range(args.repeats):
                    # Alternate so background load on the shared machine hits both alike.
                    fps, frames, published = pipeline_fps(bundle, video, broker.url, args.threads)
                    pipe.append(fps)
                    naive.append(naive_fps(bundle, video, broker.url, args.threads)[0])
                p, b = statistics.median(pipe), statistics.median(naive)
                results[precision] = {
                    "pipeline_fps": round(p, 1),
                    "naive_fps": round(b, 1),
                    "speedup": round(p / b, 2),
                    "pipeline_runs": [round(v, 1) for v in pipe],
                    "naive_runs": [round(v, 1) for v in naive],
                    "frames": frames,
                    "published": published,
                    "meets_15fps": p >= 15.0,
                }
        finally:
            broker.stop()
    print(
        json.dumps(
            {
                "bench": "live_fps",
                "video": "640x480 mp4v",
                "threads": args.threads or os.cpu_count(),
                "cpus": os.cpu_count(),
                "deeplens_fps": "3-4 (quoted)",
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
