"""Static int8 quantisation (QDQ, per-channel weights) calibrated on real training images.

Why static QDQ: on EfficientNet-Lite0 dynamic int8 quantisation only covers MatMul/Gemm, runs the
convolutions through slow ConvInteger kernels (many times slower than fp32) and loses accuracy;
static QDQ with per-channel weight scales lets onnxruntime fuse int8 convolutions and keeps the
accuracy within about a point (measured in bench/predictor_latency.py, see BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lensflow.errors import ExportError

CALIBRATION_BATCH = 8  # images per calibration call: bounds memory, keeps ranges exact (MinMax)


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an in-memory NCHW array.

    `__len__` and `set_range` serve the "CalibStridedMinMax" option: onnxruntime then reduces the
    ranges after every batch instead of keeping every activation of every image in memory
    (gigabytes for a few hundred images). Its "CalibMaxIntermediateOutputs" option would be the
    obvious choice but drops the collected data in onnxruntime 1.32.
    """

    def __init__(self, x: np.ndarray) -> None:
        self._batches = [x[s : s + CALIBRATION_BATCH] for s in range(0, len(x), CALIBRATION_BATCH)]
        self._iter: Iterator[np.ndarray] = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {"input": batch}

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """Write a static QDQ int8 copy of `fp32` to `out`, calibrated (MinMax) on `calibration`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ExportError("int8 calibration needs real training images; none were found")
    CalibrationDataReader.register(_Batches)
    prepared = out.with_name(out.stem + ".prep.onnx")
    try:
        # Shape inference + graph optimisation first, as onnxruntime recommends for static int8.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            _Batches(calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibStridedMinMax": 1},
        )
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"int8 quantisation failed: {e}") from e
    finally:
        prepared.unlink(missing_ok=True)
    return out
