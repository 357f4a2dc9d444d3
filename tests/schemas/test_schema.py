"""The curated schema describes exactly what the ingest writes, and gates bad data."""

import glob
import os

import pytest
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tfx_bsl.coders import example_coder

import schemas
from models import features as F
from tests.components.ingest.logs import run
from tests.components.ingest.test_examples import base_logs


@pytest.fixture(scope="module")
def schema():
    return tfdv.load_schema_text(schemas.path("schema.pbtxt"))


@pytest.fixture(scope="module")
def serialized(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("schema"))
    run(root, base_logs())
    import tensorflow as tf

    records = []
    for path in glob.glob(os.path.join(root, "out", "examples", "Split-*", "*")):
        records += list(tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator())
    return records


def statistics(records):
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    return stats_impl.generate_statistics_in_memory(batch)


def test_schema_lists_exactly_the_features_of_models_features(schema):
    expected = ({F.IMPRESSION_ID, F.REQUEST_ID, F.USER_ID, F.SCENARIO, F.TS, F.POSITION, F.PAGE,
                 F.NEIGHBOR_CATEGORIES} | set(F.ITEM_ID_FEATURES) | set(F.LABELS)
                | set(F.SEQUENCE_FEATURES) | set(F.DENSE_FEATURES))
    assert {f.name for f in schema.feature} == expected


def test_ingest_output_has_no_anomalies(schema, serialized):
    anomalies = tfdv.validate_statistics(statistics(serialized), schema)
    assert dict(anomalies.anomaly_info) == {}


def test_schema_flags_a_label_out_of_domain(schema, serialized):
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized[0])
    example.features.feature[F.CLICK].int64_list.value[:] = [3]
    anomalies = tfdv.validate_statistics(statistics([example.SerializeToString()] + serialized[1:]), schema)
    assert F.CLICK in anomalies.anomaly_info
