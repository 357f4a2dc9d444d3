"""No local-only file operation on artifact, log or model paths (issue 11: gs://, s3:// and
hdfs:// must work wherever a user passes such a path). Artifacts go through tf.io.gfile (TFX's
fileio) and the ingest through Beam's FileSystems; tests/**/test_*storage*.py and the Pusher's
test run them on ram://. This scan catches what those runs do not reach: any call of a
local-only file API in the packages, except the uses listed below with the reason each is local."""

import ast
import os
from typing import Dict, Iterator, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED = ("components", "pipeline", "serving", os.path.join("models", "trainer.py"))
LOCAL_ONLY = {
    "open", "os.listdir", "os.path.exists", "os.path.isdir", "os.path.isfile", "os.path.getsize",
    "os.path.abspath", "glob.glob", "os.makedirs", "os.mkdir", "os.rename", "os.replace", "os.remove",
    "os.unlink", "os.walk", "os.scandir", "os.stat", "os.chmod", "os.fdopen", "gzip.open",
    "tempfile.mkstemp", "tempfile.mkdtemp", "tempfile.TemporaryDirectory", "fcntl.flock",
}
LOCAL_PREFIXES = ("shutil.", "pathlib.")

ABLATE = "the local work directory of `funnel ablate` (fcntl locks, SQLite; its module docstring)"
VERSION_LABELS = "models.config as mounted into TF Serving's container, made atomic by a POSIX rename"
ALLOWED: Dict[str, Dict[str, str]] = {
    "components/ingest/contract.py": {"open": "the contract shipped in the package (schemas/raw_logs.yaml)"},
    "pipeline/ablate.py": {name: ABLATE for name in (
        "open", "os.path.abspath", "os.path.exists", "os.makedirs", "glob.glob", "fcntl.flock")},
    "pipeline/ablate_paired.py": {"os.path.exists": ABLATE},
    "pipeline/ablate_scoring.py": {"os.path.isdir": ABLATE},
    "pipeline/code_version.py": {name: "funnel's own source files, read where the package is installed"
                                 for name in ("open", "os.path.abspath", "os.path.isfile", "os.listdir")},
    "pipeline/airflow_runner.py": {name: "the DAG module and its configuration, for Airflow's local dags folder"
                                   for name in ("open", "os.makedirs", "os.path.abspath")},
    "pipeline/abtest.py": {"tempfile.TemporaryDirectory": "the process's scratch directory for the examples it scores"},
    "pipeline/child_process.py": {name: "the call handed to a child process, in the parent's private scratch directory"
                                  for name in ("tempfile.TemporaryDirectory", "open")},
    "pipeline/cli.py": {"os.path.abspath": "the CLI's own log file"},
    "pipeline/data_gate.py": {"tempfile.TemporaryDirectory": "the gate step's scratch for the drift check's "
                                                             "anomalies, read back in the same step"},
    "pipeline/cli_model_commands.py": {"os.path.abspath": "the CLI's own log file",
                                       "tempfile.TemporaryDirectory": "`funnel importance`'s local scratch for the "
                                                                      "ingested eval day"},
    "serving/server.py": {"open": "the TLS certificate and key files named by `funnel serve`'s flags"},
    "pipeline/progress.py": {name: "the CLI's own log file (file descriptor 2 is redirected into it)"
                             for name in ("open", "os.makedirs", "os.path.abspath", "os.path.exists",
                                          "os.path.isdir")},
    "pipeline/config.py": {"open": "configuration files: the packaged defaults and the user's file"},
    "pipeline/kubeflow_runner.py": {name: "the compiled spec, a local file (TFX's writer opens it with open())"
                                    for name in ("os.makedirs", "os.path.abspath")},
    "pipeline/local_runner.py": {"os.path.abspath": "the local work directory of LocalDagRunner (SQLite store)"},
    "pipeline/paths.py": {"os.path.abspath": "applied to local paths only"},
    "serving/batch_predict.py": {name: "the process's scratch directory for the examples it scores"
                                 for name in ("tempfile.TemporaryDirectory", "glob.glob")},
    "serving/client.py": {name: "the TLS files named by `funnel score`'s flags, and its --out, written "
                                "whole by a rename (a command-line tool)"
                          for name in ("open", "os.path.abspath", "os.replace", "os.remove")},
    "serving/set_version_labels.py": {name: VERSION_LABELS for name in (
        "open", "os.path.abspath", "tempfile.mkstemp", "os.fdopen", "os.path.exists", "os.stat", "os.chmod",
        "os.replace", "os.remove")},
}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _sources() -> Iterator[str]:
    for entry in SCANNED:
        path = os.path.join(ROOT, entry)
        if path.endswith(".py"):
            yield entry
            continue
        for directory, _, names in os.walk(path):
            yield from (os.path.relpath(os.path.join(directory, n), ROOT) for n in sorted(names) if n.endswith(".py"))


def local_file_calls() -> Iterator[Tuple[str, int, str]]:
    """(file, line, call) of every call of a local-only file API in the scanned packages."""
    for source in _sources():
        with open(os.path.join(ROOT, source)) as f:
            tree = ast.parse(f.read(), source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in LOCAL_ONLY or name.startswith(LOCAL_PREFIXES):
                    yield source.replace(os.sep, "/"), node.lineno, name


def test_no_local_only_file_operation_outside_the_justified_ones():
    found = list(local_file_calls())
    unjustified = [f"{source}:{line}: {name}" for source, line, name in found
                   if name not in ALLOWED.get(source, {})]
    assert not unjustified, ("local-only file operations (use tf.io.gfile, or Beam's FileSystems in the "
                             "ingest; or justify them in ALLOWED):\n" + "\n".join(unjustified))
    used = {(source, name) for source, _, name in found}
    stale = [f"{source}: {name}" for source, names in ALLOWED.items() for name in names if (source, name) not in used]
    assert not stale, "ALLOWED lists uses that are gone:\n" + "\n".join(stale)


def test_the_scan_sees_a_local_call():
    tree = ast.parse("import os\nos.listdir(uri)\nopen(path)\nfileio.open(path)\n")
    calls = [_dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert [c for c in calls if c in LOCAL_ONLY] == ["os.listdir", "open"]
