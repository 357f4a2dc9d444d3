"""The Dockerfile of the pipeline image, read as text (no Docker engine here): it installs the
locked set and the package, and what it names (console script, module paths, the schema path the
Kubeflow spec points at) exists."""

import ast
import importlib
import importlib.util
import json
import os
import re
import shlex

import pytest
from setuptools import find_packages

from pipeline import kubeflow_runner
from pipeline.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASES = ("python:3.10-slim", "gcr.io/tfx-oss-public/tfx:1.16.0")


def instructions():
    """(KEYWORD, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    with open(os.path.join(REPO, "Dockerfile")) as f:
        lines = [line for line in f.read().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip()]


def _setup_call():
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return {k.arg: k.value for k in call.keywords}


def _pip_installs(run):
    """The argument lists of the `pip install` commands of a RUN line."""
    return [shlex.split(part)[2:] for part in re.split(r"&&|;", run)
            if shlex.split(part)[:2] in (["pip", "install"], ["pip3", "install"])]


@pytest.fixture(scope="module")
def steps():
    return instructions()


def test_it_starts_from_a_python_3_10_base(steps):
    assert steps[0][0] == "FROM" and steps[0][1] in BASES


def test_it_installs_the_locked_set_without_resolving(steps):
    copied, lock_installs = set(), []
    for keyword, args in steps:
        if keyword == "COPY":
            copied.update(args.split()[:-1])
        if keyword == "RUN":
            for install in _pip_installs(args):
                if "-r" in install:
                    lock = install[install.index("-r") + 1]
                    assert lock in copied, f"{lock} is installed before it is copied"
                    assert "--no-deps" in install  # the lock is complete: pip must not re-resolve
                    lock_installs.append(lock)
    assert lock_installs == ["requirements-orchestration.lock"]
    with open(os.path.join(REPO, lock_installs[0])) as f:
        pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", f.read(), re.M))
    assert pins["tfx"] == "1.16.0"
    # Every step runs TFX's Kubeflow V2 executor entry point, which imports kfp.pipeline_spec.
    assert "kfp-pipeline-spec" in pins


def test_it_copies_and_installs_every_package_of_setup_py(steps):
    setup = _setup_call()
    include = ast.literal_eval(setup["packages"].keywords[0].value)
    top_level = {p.split(".")[0] for p in find_packages(REPO, include=include)}
    assert {"pipeline", "components", "models", "schemas"} <= top_level
    copied = set()
    for keyword, args in steps:
        if keyword == "COPY":
            sources = args.split()[:-1]
            for source in sources:
                assert os.path.exists(os.path.join(REPO, source)), source
            copied.update(sources)
        if keyword == "RUN" and any(install[-1:] == ["."] for install in _pip_installs(args)):
            assert "--no-deps" in _pip_installs(args)[0]
            assert "setup.py" in copied and top_level <= copied, top_level - copied
            break
    else:
        pytest.fail("the Dockerfile never runs `pip install --no-deps .`")


def test_its_command_is_the_packages_console_script(steps):
    commands = [json.loads(args) for keyword, args in steps if keyword in ("CMD", "ENTRYPOINT")]
    assert commands and all(isinstance(c, list) for c in commands)  # exec form
    scripts = dict(s.split("=", 1) for s in ast.literal_eval(_setup_call()["entry_points"])["console_scripts"])
    scripts = {name.strip(): target.strip() for name, target in scripts.items()}
    for command in commands:
        assert command[0] in scripts
        module, _, function = scripts[command[0]].partition(":")
        assert callable(getattr(importlib.import_module(module), function))
    for keyword, args in steps:  # the build's own smoke run uses the script too
        if keyword == "RUN" and re.search(r"\bfunnel\s+(\w+)", args):
            from pipeline import cli

            sub = re.search(r"\bfunnel\s+(\w+)", args).group(1)
            assert sub in cli.build_parser()._subparsers._group_actions[0].choices


def test_the_module_paths_it_names_exist():
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = f.read()
    modules = re.findall(r"python -m ([\w.]+)", text)
    assert modules == [kubeflow_runner.STEP_COMMAND[2]]
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    named = {p.rstrip(".") for p in re.findall(r"\b((?:models|components|pipeline)\.[\w.]+)", text)}
    assert {"models.trainer.run_fn", "models.preprocessing.preprocessing_fn"} <= named
    for path in named:  # a module, or an attribute of one
        try:
            importlib.import_module(path)
        except ImportError:
            module, _, attribute = path.rpartition(".")
            assert hasattr(importlib.import_module(module), attribute), path


def test_the_kubeflow_schema_path_is_the_schema_inside_the_image(steps):
    workdir = [args for keyword, args in steps if keyword == "WORKDIR"][-1]
    schema_path = load_config()["orchestration"]["kubeflow"]["schema_path"]
    assert schema_path == f"{workdir}/schemas/schema.pbtxt"
    assert any(keyword == "COPY" and args.split()[:1] == ["schemas"] for keyword, args in steps)
    assert os.path.exists(os.path.join(REPO, "schemas", "schema.pbtxt"))


def test_the_build_context_leaves_out_the_local_environments():
    with open(os.path.join(REPO, ".dockerignore")) as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".venv", ".tools", ".git"} <= ignored
