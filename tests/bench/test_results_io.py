"""bench.results_io: a benchmark's JSON and, when given, its markdown table beside it."""

import json

from bench.results_io import write_result


def test_the_json_and_the_markdown_beside_it(tmp_path, capsys):
    path = tmp_path / "results" / "peers.json"
    write_result({"rows": [1]}, str(path), "| a |\n")
    assert json.loads(path.read_text()) == {"rows": [1]}
    assert (tmp_path / "results" / "peers.md").read_text() == "| a |\n"
    assert '"rows"' in capsys.readouterr().out
    write_result({"rows": [2]}, str(tmp_path / "train.json"))
    assert not (tmp_path / "train.md").exists()
