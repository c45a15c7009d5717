"""Batch prediction: a bundle over a folder, a file list or a dataset, into a CSV or Parquet file.

    lensflow predict BUNDLE SOURCE --out predictions.parquet [--engine local|ray]

`sources` turns SOURCE into image paths, `rows` turns images into output rows with the one
Predictor (unreadable files become error rows), `store` writes the rows resumably (finished
chunks are kept beside `--out` until the run completes), and the engines run the rows:
`local` in this process, `ray_engine` on a Ray Data actor pool (the `[ray]` extra).
"""

from lensflow.batch.run import BatchConfig, BatchSummary, batch_predict

__all__ = ["BatchConfig", "BatchSummary", "batch_predict"]
