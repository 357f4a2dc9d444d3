"""`funnel simulate`'s arguments (simulation/cli.py): a bad one is one line and exit code 2."""

import pytest

from simulation import cli


@pytest.mark.parametrize("arguments, message", [
    (["--seed", "-1"], "simulate: seed must be >= 0, got -1\n"),  # numpy's traceback before
    (["--items", "3"], "simulate: n_items (--items) must be >= n_categories, 60, got 3 (every category holds an item)\n"),
    (["--days", "0"], "simulate: users and days must be >= 1\n"),
    (["--start-date", "2024-13-01"], "simulate: start_date must be YYYY-MM-DD, not '2024-13-01'\n"),
])
def test_a_bad_argument_is_one_line_before_anything_is_written(tmp_path, capsys, arguments, message):
    assert cli.main(["--out", str(tmp_path / "logs"), "--users", "3"] + arguments) == 2
    assert capsys.readouterr().err == message
    assert not (tmp_path / "logs").exists()
