"""Data sources and preprocessing: config → train/val/test arrays and the scaler.

``load_dataset(cfg.data, seed)`` is the entry point; the readers live in their own modules and
are imported lazily so that reading an npz file does not pull in pandas or h5py.
"""

from hqrun.data.config import JET_CLASSES, JET_FEATURES, DataConfig
from hqrun.data.datasets import Splits, load_dataset, read_raw, sample_path
from hqrun.data.preprocess import Scaler

__all__ = ["DataConfig", "JET_CLASSES", "JET_FEATURES", "Scaler", "Splits", "load_dataset", "read_raw", "sample_path"]
