"""DeepCTR's feature-crossing CTR models as the benches use them (bench.peers_bench, bench.census_bench)."""

import contextlib
import io


def crossing_network(name: str, columns):
    """DCNMix (DCN-M) or EDCN, one task, on DeepCTR feature `columns`. EDCN takes categorical
    inputs only (DeepCTR builds them from the deep part, which refuses DenseFeat): its dense
    columns are left out."""
    from deepctr import models
    from deepctr.feature_column import DenseFeat

    if name == "DCNMix":
        return models.DCNMix(columns, columns)
    if name != "EDCN":
        raise ValueError(f"not a DeepCTR crossing model: {name!r}")
    categorical = [c for c in columns if not isinstance(c, DenseFeat)]
    with contextlib.redirect_stdout(io.StringIO()):  # EDCN prints its layers while it builds
        return models.EDCN(categorical, categorical)
