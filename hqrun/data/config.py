"""Schema of the ``data`` config group.

Hydra composes plain YAML; :func:`hqrun.config.validate_config` merges ``cfg.data`` into this
dataclass before any work starts, so a misspelt key (``data.nan_polcy``) or a wrong type is
refused up front instead of surfacing minutes later inside a trial. Every YAML file under
``conf/data/`` uses exactly these keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

#: The 16 high-level jet-substructure features of the hls4ml LHC jet data set, in its order.
JET_FEATURES: tuple[str, ...] = (
    "j_zlogz",
    "j_c1_b0_mmdt",
    "j_c1_b1_mmdt",
    "j_c1_b2_mmdt",
    "j_c2_b1_mmdt",
    "j_c2_b2_mmdt",
    "j_d2_b1_mmdt",
    "j_d2_b2_mmdt",
    "j_d2_a1_b1_mmdt",
    "j_d2_a1_b2_mmdt",
    "j_m2_b1_mmdt",
    "j_m2_b2_mmdt",
    "j_n2_b1_mmdt",
    "j_n2_b2_mmdt",
    "j_mass_mmdt",
    "j_multiplicity",
)

#: The five jet classes, alphabetical (as a label encoder orders OpenML's labels).
JET_CLASSES: tuple[str, ...] = ("g", "q", "t", "w", "z")

#: Where OpenML describes a data set (JSON); its ``parquet_url``/``url`` name the file to fetch.
OPENML_DESCRIPTION_URL = "https://www.openml.org/api/v1/json/data/{id}"


@dataclass
class DataConfig:
    """Where the data comes from and how it is split and scaled.

    ``source`` picks the reader: ``sample`` (the jet sample shipped inside the package),
    ``file`` (a local npz/csv/arff/parquet/hdf5 file), ``openml`` (download once, then read the
    cache) or ``idx`` (a directory of MNIST-format image files).
    """

    name: str = "jets_sample"
    source: str = "sample"  # sample | file | openml | idx
    path: Optional[str] = None  # file (or directory of .h5 / idx files)
    format: str = "auto"  # auto | npz | csv | arff | parquet | hdf5
    features: Optional[List[str]] = None  # None: the 16 hls4ml jet features
    classes: Optional[List[str]] = None  # None: g, q, t, w, z
    label_column: str = "class"  # table formats: the column holding the class
    extra_columns: str = "error"  # error | ignore: table columns that are neither feature nor label
    # OpenML
    openml_id: int = 42468
    url: Optional[str] = None  # None: ask OpenML's API for the file URL
    cache_dir: str = "~/.cache/hqrun/openml"
    download_timeout_s: float = 60.0
    # IDX images
    image_prefix_train: str = "train"
    image_prefix_test: str = "t10k"
    use_file_test_split: bool = True  # idx: the t10k files are the test split
    # preprocessing
    max_samples: Optional[int] = None  # stratified subsample before splitting (None: all)
    test_fraction: float = 0.2
    val_fraction: float = 0.2  # fraction of what remains after the test split
    standardize: bool = True
    nan_policy: str = "reject"  # reject | drop
