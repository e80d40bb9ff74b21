"""The OpenML copy of the hls4ml jet data set (id 42468), downloaded once into a cache.

A run must not depend on the network after the first one, and a machine without network must
get an actionable message, not a socket traceback: the error names the cache path to drop a
file into and the formats ``data=jets_file`` reads instead. Downloads go to a temporary name and
are renamed when complete, so an interrupted download never looks like a cache hit.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from hqrun.data.config import OPENML_DESCRIPTION_URL
from hqrun.data.raw import RawData
from hqrun.data.readers import read_file
from hqrun.errors import DataError

#: Cache file suffixes, in the order they are looked for (fastest to read first).
CACHE_SUFFIXES = (".npz", ".parquet", ".arff", ".csv")


def cache_files(cache_dir: str | os.PathLike, openml_id: int) -> list[Path]:
    """Candidate cache files for a data set id, in lookup order."""
    root = Path(os.path.expanduser(str(cache_dir)))
    return [root / f"openml_{openml_id}{suffix}" for suffix in CACHE_SUFFIXES]


def find_cached(cache_dir: str | os.PathLike, openml_id: int) -> Path | None:
    """The first cache file present, or None."""
    for candidate in cache_files(cache_dir, openml_id):
        if candidate.is_file():
            return candidate
    return None


def read_openml(
    openml_id: int,
    cache_dir: str,
    features: Sequence[str],
    classes: Sequence[str],
    url: str | None = None,
    label_column: str = "class",
    timeout_s: float = 60.0,
) -> RawData:
    """Read the data set from the cache, downloading it first when the cache is empty."""
    cached = find_cached(cache_dir, openml_id)
    if cached is None:
        cached = download(openml_id, cache_dir, url=url, timeout_s=timeout_s)
    raw = read_file(cached, features, classes, label_column=label_column, extra_columns="ignore")
    raw.notes["cache_file"] = str(cached)
    return raw


def download(openml_id: int, cache_dir: str, url: str | None = None, timeout_s: float = 60.0) -> Path:
    """Fetch the data file (parquet if OpenML offers it, else ARFF) into the cache."""
    root = Path(os.path.expanduser(str(cache_dir)))
    try:
        if url is None:
            url = _file_url(openml_id, timeout_s)
        suffix = ".parquet" if url.lower().endswith((".pq", ".parquet")) else ".arff"
        root.mkdir(parents=True, exist_ok=True)
        target = root / f"openml_{openml_id}{suffix}"
        partial = target.with_name(target.name + ".part")
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        partial.replace(target)
        return target
    except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError) as err:
        raise DataError(
            f"cannot download OpenML data set {openml_id} ({type(err).__name__}: "
            f"{getattr(err, 'reason', err)}) and the cache {root} holds none of "
            f"{[p.name for p in cache_files(root, openml_id)]}. Either connect to the network once, "
            f"copy the OpenML ARFF/parquet export into {root} under one of those names, or read a "
            "local copy with data=jets_file data.path=FILE (npz, csv, arff, parquet or the Zenodo "
            "hdf5 files)."
        ) from None


def _file_url(openml_id: int, timeout_s: float) -> str:
    description_url = OPENML_DESCRIPTION_URL.format(id=openml_id)
    with urllib.request.urlopen(description_url, timeout=timeout_s) as response:
        description = json.loads(response.read().decode("utf-8"))["data_set_description"]
    return description.get("parquet_url") or description["url"]
