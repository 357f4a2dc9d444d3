"""No secrets in the repository or in compiled pipeline specs, and no unsafe deserialisation in the
product code.

The secrets scan is a short pattern list (private keys, cloud and service tokens, passwords in
URLs and assignments) run over every git-tracked file and over the specs `funnel compile` writes
(the Kubeflow golden test and the Airflow configuration test compile them with secret-looking
values planted in the environment: `plant_credentials`, `assert_no_secrets`; the golden spec is
tracked, so the file scan covers it as well). It is a tripwire, not a replacement for a secrets scanner in CI
(e.g. gitleaks over the whole history). The planted secrets below are assembled at run time so
that this file does not trip its own scan.
"""

import os
import re
import subprocess
from typing import List, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET_PATTERNS = {
    "private key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    "AWS access key id": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret access key": r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}",
    "GCP service account key": r"\"private_key(?:_id)?\"\s*:\s*\"[^\"]{16,}",
    "Google API key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "Google OAuth token": r"\bya29\.[0-9A-Za-z_\-]{20,}",
    "GitHub token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})",
    "Slack token": r"\bxox[abposr]-[0-9A-Za-z\-]{10,}",
    "Stripe key": r"\b[sr]k_live_[0-9A-Za-z]{20,}",
    "JSON web token": r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",
    "password in URL": r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@\"'<>]+:[^\s/@\"'<>]+@[^\s/\"'<>]+",
    "password or token assignment":
        r"(?i)\b(?:password|passwd|pwd|secret|api_?key|access_?token|auth_?token|client_?secret)[\"']?\s*[:=]\s*"
        r"[\"'][^\"'\s]{8,}[\"']",
}
_COMPILED = [(name, re.compile(pattern)) for name, pattern in SECRET_PATTERNS.items()]


def scan(text: str) -> List[Tuple[str, int, str]]:
    """(pattern name, line number, the matched text shortened) of every finding."""
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        for name, pattern in _COMPILED:
            for match in pattern.finditer(line):
                findings.append((name, number, match.group(0)[:24] + "..."))
    return findings


# Assembled so that the literal secrets are not in this file.
PLANTED = {
    "private key": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA",
    "AWS access key id": "aws_access_key_id = " + "AKIA" + "Q3EGRIDGEXAMPLE7",
    "AWS secret access key": "aws_secret_access_key=" + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    "GCP service account key": '{"type": "service_account", "private_key_id": "' + "3f2a9c" * 7 + '"}',
    "Google API key": "key=" + "AIza" + "SyD3x4mpl3K3y0nlyF0rT3st1ng_abcdEFG",
    "Google OAuth token": "Authorization: Bearer " + "ya29" + ".a0AfH6SMBx3xampleT0ken_value",
    "GitHub token": "GITHUB_TOKEN=" + "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "Slack token": "xox" + "b-123456789012-abcdefghijkl",
    "Stripe key": "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "JSON web token": "eyJ" + "hbGciOiJIUzI1NiJ9.eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    "password in URL": "sqlite_uri: postgresql://funnel:" + "hunter2hunter2@db.internal:5432/mlmd",
    "password or token assignment": "password = '" + "correct-horse-battery" + "'",
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_scanner_flags_a_planted_secret(name):
    assert name in {found for found, _, _ in scan("harmless: line\n" + PLANTED[name])}, PLANTED[name]


def test_the_scanner_leaves_ordinary_text_alone():
    text = ("image: registry.example.com/ranking/funnel:1.2.3\npipeline_root: gs://funnel-test/tfx\n"
            "git@github.com:org/repo.git\nhttp://127.0.0.1:6006/\n--tls-key server.key\n"
            "password = os.environ['DB_PASSWORD']\ntoken = tokens[0]\n")
    assert scan(text) == []


def _tracked_files() -> List[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.decode().split("\0") if name]


# Findings that are not secrets: (file, pattern) with the reason.
ALLOWED_FINDINGS = {
    # A tuple assignment of database, user and password: the regular expression takes the
    # database name ("funnel_md") for the password; the password there is a short test value.
    ("tests/pipeline/test_metadata.py", "password or token assignment"),
}


def test_no_secrets_in_the_tracked_files():
    findings = []
    for name in _tracked_files():
        path = os.path.join(REPO, name)
        if not os.path.isfile(path):  # deleted in the work tree
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data[:8192]:  # binary
            continue
        findings += [(name,) + finding for finding in scan(data.decode("utf-8", "replace"))
                     if (name, finding[0]) not in ALLOWED_FINDINGS]
    assert not findings, findings


def plant_credentials(monkeypatch, directory) -> dict:
    """Puts credentials into the environment, as on a developer's machine or a CI runner, for
    a test that compiles a pipeline spec; returns {variable or file: the secret value}.
    `assert_no_secrets` then checks that none of it reached the spec."""
    planted = {"AWS_ACCESS_KEY_ID": PLANTED["AWS access key id"].split()[-1],
               "AWS_SECRET_ACCESS_KEY": PLANTED["AWS secret access key"].split("=", 1)[1],
               "GITHUB_TOKEN": PLANTED["GitHub token"].split("=", 1)[1],
               "FUNNEL_DB_PASSWORD": "correct-horse-battery"}
    for key, value in planted.items():
        monkeypatch.setenv(key, value)
    credentials = os.path.join(str(directory), "service-account.json")
    with open(credentials, "w") as f:
        f.write(PLANTED["GCP service account key"])
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", credentials)
    planted["GOOGLE_APPLICATION_CREDENTIALS"] = credentials
    return planted


def assert_no_secrets(text: str, planted: dict, where: str) -> None:
    """No pattern matches `text` and no planted value is in it."""
    assert scan(text) == [], where
    leaked = [key for key, value in planted.items() if value in text]
    assert not leaked, f"{where} holds the compiling environment's {', '.join(leaked)}"


def test_plant_and_assert_catch_a_leak(monkeypatch, tmp_path):
    planted = plant_credentials(monkeypatch, tmp_path)
    assert_no_secrets("image: funnel:1.2.3\n", planted, "spec")
    with pytest.raises(AssertionError, match="AWS_SECRET_ACCESS_KEY"):
        assert_no_secrets("env: " + os.environ["AWS_SECRET_ACCESS_KEY"], planted, "spec")
    with pytest.raises(AssertionError):
        assert_no_secrets(PLANTED["private key"], planted, "spec")


# What would deserialise or execute data: allowed only where listed, with the reason.
UNSAFE_CALLS = re.compile(r"\b(?:pickle\.loads?|cloudpickle\.loads?|dill\.loads?|marshal\.loads?|shelve\.open|"
                          r"jsonpickle|yaml\.load|yaml\.unsafe_load|yaml\.full_load|keras\.models\.load_model|"
                          r"allow_pickle\s*=\s*True)\b|(?<![\w.])(?:eval|exec|__import__)(?=\s*\()")
ALLOWED_UNSAFE = {
    # The ingest's shuffle packing: parts pickled by the ingest's own DoFn and unpickled after
    # the GroupByKey of the same pipeline; never read from files, logs or requests (README, "Exposure").
    ("components/ingest/packing.py", "pickle.loads"),
    # A variant's call (function and arguments), pickled by the parent into its own private
    # temporary directory and unpickled by the child it spawned, as multiprocessing itself would
    # over a pipe (pipeline/child_process.py says why a file); never a file anyone else writes.
    ("pipeline/child_process.py", "pickle.load"),
}


def test_no_unsafe_deserialisation_in_the_product_code():
    found = set()
    for name in _tracked_files():
        if not name.endswith(".py") or name.startswith("tests/"):
            continue
        with open(os.path.join(REPO, name)) as f:
            for line in f:
                code = line.split("#", 1)[0]
                found.update((name, match.group(0)) for match in UNSAFE_CALLS.finditer(code))
    assert found == ALLOWED_UNSAFE
