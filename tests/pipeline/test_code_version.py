import textwrap

from pipeline import code_version


def _project(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_fingerprint_follows_the_modules_a_step_imports_and_only_those(tmp_path):
    _project(tmp_path, {
        "models/__init__.py": "",
        "models/entry.py": """
            from models import features as F
            from .helpers import scale

            def run():
                from models.lazy import late  # imported only when called: still the step's code
                return late(scale(F.X))
        """,
        "models/features.py": "X = 1\n",
        "models/helpers.py": "def scale(x):\n    return 2 * x\n",
        "models/lazy.py": "import models.deep\n\ndef late(x):\n    return x\n",
        "models/deep.py": "Y = 2\n",
        "models/unrelated.py": "Z = 3\n",
        "models/settings.yaml": "a: 1\n",
        "models/other.yaml": "b: 1\n",
    })
    files = code_version.source_files(["models.entry"], root=str(tmp_path))
    assert files == ["models/__init__.py", "models/deep.py", "models/entry.py", "models/features.py",
                     "models/helpers.py", "models/lazy.py"]

    before = code_version.source_fingerprint("models.entry", root=str(tmp_path))
    (tmp_path / "models/unrelated.py").write_text("Z = 4\n")
    (tmp_path / "models/other.yaml").write_text("b: 2\n")
    assert code_version.source_fingerprint("models.entry", root=str(tmp_path)) == before
    for edited in ("models/deep.py", "models/helpers.py", "models/features.py"):
        path = tmp_path / edited
        path.write_text(path.read_text() + "# edited\n")
        after = code_version.source_fingerprint("models.entry", root=str(tmp_path))
        assert after != before, edited
        before = after


def test_a_data_file_counts_when_a_module_beside_it_names_it(tmp_path):
    _project(tmp_path, {
        "models/__init__.py": "",
        "models/presets.py": "import os\nFILE = os.path.join(os.path.dirname(__file__), 'settings.yaml')\n",
        "models/settings.yaml": "a: 1\n",
        "models/other.yaml": "b: 1\n",
    })
    assert code_version.source_files(["models.presets"], root=str(tmp_path)) == [
        "models/__init__.py", "models/presets.py", "models/settings.yaml"]
    before = code_version.source_fingerprint("models.presets", root=str(tmp_path))
    (tmp_path / "models/settings.yaml").write_text("a: 2\n")
    assert code_version.source_fingerprint("models.presets", root=str(tmp_path)) != before


def test_the_steps_code_on_the_real_tree():
    ingest = code_version.source_files([code_version.INGEST_CODE])
    transform = code_version.source_files([code_version.TRANSFORM_CODE])
    trainer = code_version.source_files([code_version.TRAINER_CODE])
    assert {"components/ingest/executor.py", "components/ingest/reader.py", "models/features.py",
            "schemas/raw_logs.yaml"} <= set(ingest)
    assert not any(f.startswith("models/mixtures") for f in ingest)
    assert {"models/preprocessing.py", "models/features.py"} <= set(transform)
    assert "models/trainer.py" not in transform
    # the registered parts the builder composes by name are imported, so they are the Trainer's code
    assert {"models/mixtures/dtn.py", "models/heads/esm2.py", "models/fusion_network.py",
            "models/presets.yaml"} <= set(trainer)
    assert not any(f.startswith(("pipeline/", "components/")) for f in trainer)
