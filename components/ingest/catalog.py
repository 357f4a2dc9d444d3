"""The item catalog: item_id -> category, brand, shop, price, broadcast as a side input."""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

from components.ingest import reader
from components.ingest.contract import CONTRACT, LogFile
from models import features


class ItemCatalog:
    """Items indexed by integer code (their row); unknown ids map to -1."""

    def __init__(self, items: pd.DataFrame):
        self.ids = pd.Index(items[features.ITEM_ID].to_numpy(dtype=object))
        self.category = items[features.CATEGORY_ID].to_numpy(dtype=object)
        self.brand = items[features.BRAND_ID].to_numpy(dtype=object)
        self.shop = items[features.SHOP_ID].to_numpy(dtype=object)
        self.price = items["price"].to_numpy(dtype=np.float64)
        # Dense category codes, for (user, category) event groups.
        self.category_code, _ = pd.factorize(self.category)
        # The id columns as Arrow binary arrays: examples take them by item code, a C
        # gather, instead of converting one Python string per value. The category array
        # ends with the neighbour pad, taken for code -1 (no neighbour).
        self._id_arrays = {
            name: pa.array(values, pa.binary()) for name, values in (
                (features.ITEM_ID, self.ids.to_numpy()),
                (features.CATEGORY_ID, np.append(self.category, features.NEIGHBOR_PAD)),
                (features.BRAND_ID, self.brand), (features.SHOP_ID, self.shop))}

    def __len__(self):
        return len(self.ids)

    def codes(self, item_ids) -> np.ndarray:
        return self.ids.get_indexer(item_ids)

    def id_arrays(self, items: np.ndarray) -> Dict[str, pa.Array]:
        """item_id, category_id, brand_id, shop_id of the items with these codes."""
        indices = pa.array(items)
        return {name: ids.take(indices) for name, ids in self._id_arrays.items()}

    def neighbor_categories(self, items: np.ndarray) -> pa.Array:
        """Categories of these items; code -1 gives the neighbour pad."""
        return self._id_arrays[features.CATEGORY_ID].take(pa.array(np.where(items < 0, len(self), items)))


def build_catalog(frames: List[pd.DataFrame], paths: Sequence[str]) -> Tuple[ItemCatalog, List[dict]]:
    """Concatenates the items files; the first record of a repeated item_id (in file
    order) is kept and the others are quarantined as duplicate_item_id."""
    names = CONTRACT["items"].field_names + (reader.FILE_COLUMN, reader.ROW_COLUMN)
    items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=names)
    items = items.sort_values([reader.FILE_COLUMN, reader.ROW_COLUMN], kind="stable")
    repeated = items.duplicated(features.ITEM_ID, keep="first").to_numpy()
    quarantine = reader.quarantine_by_file(items[repeated], lambda index: LogFile("items", paths[index], index),
                                           reader.DUPLICATE_ITEM_ID, features.ITEM_ID)
    return ItemCatalog(items[~repeated].reset_index(drop=True)), quarantine
