"""The `transform:` section's check (models/preprocessing.py `check_transform_config`)."""

import pytest

from models import features as F
from models import preprocessing as P


def test_the_defaults_an_empty_section_and_the_statistics_switch_pass():
    P.check_transform_config(None)
    P.check_transform_config(dict(P.DEFAULT_TRANSFORM_CONFIG))
    P.check_transform_config({"statistics": False, "bucketized_features": [], "vocab_frequency_threshold": 0})
    P.check_transform_config({"bucketized_features": list(F.DENSE_FEATURES), "num_buckets": 1})


@pytest.mark.parametrize("section, message", [
    ({"num_bucket": 20}, r"unknown keys \['num_bucket'\]; keys: .*'num_buckets'"),
    ({"num_buckets": 0}, "num_buckets must be an integer >= 1, got 0"),
    ({"num_oov_buckets": 0}, "num_oov_buckets must be an integer >= 1, got 0"),
    ({"vocab_frequency_threshold": -1}, "vocab_frequency_threshold must be an integer >= 0"),
    ({"vocab_frequency_threshold": 2.5}, "vocab_frequency_threshold must be an integer >= 0"),
    ({"bucketized_features": ["item_prize"]}, r"bucketized_features must be a list of dense features .*got \['item_prize'\]"),
    ({"bucketized_features": "item_price"}, "bucketized_features must be a list"),
    ({"statistics": "off"}, "statistics must be true or false"),
])
def test_a_bad_key_or_value_is_named(section, message):
    with pytest.raises(ValueError, match=message):
        P.check_transform_config(section)
