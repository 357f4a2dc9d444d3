"""Global duplicate detection for impression ids.

Impressions are sharded by user for the join, so a repeated impression_id (a record
logged twice, or two users given one id) is found in a separate, cheap pass that
shuffles only (id, file, row, item, ts) by a hash of the id. The first occurrence in file
order wins; the others ("losers") are quarantined by the user shard that holds them, and
their item and time let the item statistics leave them out.
"""

from typing import Iterable, List, Tuple

import numpy as np
import pandas as pd

from components.ingest import packing, reader
from models import features

_ROW_BITS = 40


def stable_shard(values: pd.Series, num_shards: int) -> np.ndarray:
    """A process-independent hash shard (Python's hash() is salted per process)."""
    return (pd.util.hash_array(values.to_numpy(dtype=object)) % np.uint64(num_shards)).astype(np.int64)


def record_keys(frame: pd.DataFrame) -> np.ndarray:
    """One int64 per record: (file index, row number)."""
    return (frame[reader.FILE_COLUMN].to_numpy(np.int64) << _ROW_BITS) | frame[reader.ROW_COLUMN].to_numpy(np.int64)


_ID_COLUMNS = [features.IMPRESSION_ID, reader.FILE_COLUMN, reader.ROW_COLUMN, reader.ITEM_CODE_COLUMN, features.TS]


def shard_impression_ids(frame: pd.DataFrame, num_shards: int) -> List[Tuple[int, bytes]]:
    """(shard, packed ids part) by a hash of the id."""
    ids = frame[_ID_COLUMNS]
    shards = stable_shard(ids[features.IMPRESSION_ID], num_shards)
    return [(int(s), packing.pack(part)) for s, part in ids.groupby(shards, sort=True)]


def find_losers(parts: Iterable[bytes]) -> pd.DataFrame:
    """Every occurrence of an impression id but its first (`shard_impression_ids` columns)."""
    ids = packing.unpack(parts, pd.DataFrame(columns=_ID_COLUMNS))
    ids = ids.sort_values([reader.FILE_COLUMN, reader.ROW_COLUMN], kind="stable")
    return ids[ids.duplicated(features.IMPRESSION_ID, keep="first")]
