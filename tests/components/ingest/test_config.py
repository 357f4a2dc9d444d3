"""The ingest's settings (components/ingest/config.py): what YAML gives is checked, not trusted."""

import pytest

from components.ingest.config import IngestConfig


@pytest.mark.parametrize("settings, message", [
    ({"eval_days": "2"}, "eval_days must be an integer, got '2'"),  # a TypeError traceback before
    ({"num_shards": 2.5}, "num_shards must be an integer, got 2.5"),
    ({"compression_level": True}, "compression_level must be an integer, got True"),
    ({"max_quarantine_fraction": "abc"}, "max_quarantine_fraction must be a number in [0, 1], got 'abc'"),
    ({"attribution_window_seconds": -5}, "attribution_window_seconds must be >= 1, got -5"),  # accepted before
    ({"click_window_seconds": 0}, "click_window_seconds must be >= 1, got 0"),
    ({"end_date": "2026-10-03", "train_days": "2"}, "train_days must be an integer >= 1, got '2'"),
])
def test_a_setting_of_the_wrong_type_or_range_is_named(settings, message):
    with pytest.raises(ValueError) as error:
        IngestConfig(**settings)
    assert str(error.value) == message


def test_an_unquoted_yaml_date_is_an_end_date(tmp_path):
    (tmp_path / "c.yaml").write_text("ingest: {end_date: 2026-10-03, train_days: 2}\n")
    config = IngestConfig.from_yaml(str(tmp_path / "c.yaml"))
    assert config.end_date == "2026-10-03" and isinstance(config.end_date, str)  # JSON-serializable for the step
    assert IngestConfig(max_quarantine_fraction=0).max_quarantine_fraction == 0
