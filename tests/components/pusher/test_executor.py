"""The Pusher publishes a version TF Serving never sees half-written: on ram:// (an object
store's stand-in: no atomic directory rename) a poller checking after every file written never
finds a version's saved_model.pb without all of its variables and assets; on a local disk the
version appears by one rename."""

import os
import time

import pytest
import tensorflow as tf
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.pusher import executor as pusher
from tests import ramfs


def _model(uri: str) -> standard_artifacts.Model:
    module = tf.Module()
    module.weights = [tf.Variable(tf.fill([64, 64], float(i))) for i in range(3)]
    module.serve = tf.function(lambda x: x * module.weights[0][0, 0], input_signature=[tf.TensorSpec([None])])
    tf.saved_model.save(module, os.path.join(uri, "Format-Serving"))
    model = standard_artifacts.Model()
    model.uri = uri
    return model


def _push(model_uri: str, base: str) -> standard_artifacts.PushedModel:
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = base + "-artifact"
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    pusher.Executor().Do({"model": [_model(model_uri)], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                         {"push_destination": proto_utils.proto_to_json(destination)})
    return pushed


@pytest.fixture(autouse=True)
def no_warmup(monkeypatch):
    """serving.warmup needs a funnel model; here a stand-in file in the same place."""
    def prepare_push(model_dir):
        path = os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
        fileio.makedirs(os.path.dirname(path))
        with fileio.open(path, "wb") as f:
            f.write(b"requests")
        return path

    monkeypatch.setattr(pusher.warmup, "prepare_push", prepare_push)


def test_saved_model_is_published_last():
    order = pusher.publish_order(["saved_model.pb", "variables/variables.index", "assets.extra/w",
                                  "fingerprint.pb", "variables/variables.data-00000-of-00001"])
    assert order[-1] == "saved_model.pb" and len(order) == 5


def test_an_object_store_never_shows_a_version_without_its_variables(monkeypatch):
    base = "ram://push-test/serving"
    copy, polls = fileio.copy, []

    def poll():  # what TF Serving's poller would find: every all-digit directory with a graph
        for name in fileio.listdir(base) if fileio.exists(base) else []:
            version = os.path.join(base, name.rstrip("/"))
            if name.rstrip("/").isdigit() and fileio.exists(os.path.join(version, "saved_model.pb")):
                polls.append(set(pusher._relative_files(version)))

    def copy_and_poll(*args, **kwargs):
        copy(*args, **kwargs)
        poll()

    monkeypatch.setattr(fileio, "copy", copy_and_poll)
    monkeypatch.setattr(fileio, "rename", lambda *a, **k: pytest.fail("no atomic rename on an object store"))
    try:
        pushed = _push("ram://push-test/model", base)
        final = pushed.get_string_custom_property("pushed_destination")
        expected = set(pusher._relative_files("ram://push-test/model/Format-Serving")) | {
            "assets.extra/tf_serving_warmup_requests"}
        assert set(pusher._relative_files(final)) == expected
        assert any(f.startswith("variables/") for f in expected)
        assert polls and all(seen == expected for seen in polls)  # seen only whole
        assert [n.rstrip("/") for n in fileio.listdir(base)] == [os.path.basename(final)]  # staging removed
    finally:
        ramfs.remove_tree("ram://push-test")


def test_a_local_version_appears_by_one_rename(tmp_path, monkeypatch):
    renames = []
    rename = fileio.rename
    monkeypatch.setattr(fileio, "rename", lambda *a, **k: renames.append(a) or rename(*a, **k))
    pushed = _push(str(tmp_path / "model"), str(tmp_path / "serving"))
    final = pushed.get_string_custom_property("pushed_destination")
    assert renames == [(os.path.join(str(tmp_path / "serving"), ".tmp-" + os.path.basename(final)), final)]
    assert os.listdir(tmp_path / "serving") == [os.path.basename(final)]
    assert os.path.exists(os.path.join(final, "variables", "variables.index"))


def _leftovers(base: str, now: int) -> dict:
    """What killed pushes leave under `base`, and a push still running: name -> its files."""
    layout = {
        f".tmp-{now - 7200}": ["saved_model.pb", "variables/variables.index"],  # killed while staging
        f".tmp-{now - 5400}": ["saved_model.pb"],  # killed while publishing to an object store:
        f"{now - 5400}": ["variables/variables.index"],  # its version never got a saved_model.pb
        f".tmp-{now - 4000}": ["variables/variables.index"],  # killed after publishing, before cleanup
        f"{now - 4000}": ["saved_model.pb", "variables/variables.index"],  # a whole version: kept
        f".tmp-{now - 60}": ["variables/variables.index"],  # a push started a minute ago: kept
        ".tmp-notaversion": ["x"],  # not a staging name funnel writes: kept
    }
    for name, files in layout.items():
        for path in files:
            fileio.makedirs(os.path.dirname(os.path.join(base, name, path)))
            with fileio.open(os.path.join(base, name, path), "wb") as f:
                f.write(b"x")
    return layout


@pytest.mark.parametrize("scheme", ["local", "ram"])
def test_a_push_removes_what_killed_pushes_left(tmp_path, scheme):
    base = str(tmp_path / "serving") if scheme == "local" else "ram://stale-test/serving"
    now = int(time.time())
    try:
        _leftovers(base, now)
        if scheme == "local":
            pushed = _push(str(tmp_path / "model"), base)
            kept = {os.path.basename(pushed.get_string_custom_property("pushed_destination"))}
        else:  # the executor's own step, on an object store's listing (directories end in "/")
            assert sorted(pusher.remove_stale_staging(base, now)) == sorted(
                os.path.join(base, n) for n in (f".tmp-{now - 7200}", f".tmp-{now - 5400}", f"{now - 5400}",
                                                f".tmp-{now - 4000}"))
            kept = set()
        names = {n.rstrip("/") for n in fileio.listdir(base)}
        assert names == kept | {f"{now - 4000}", f".tmp-{now - 60}", ".tmp-notaversion"}
        assert fileio.exists(os.path.join(base, f"{now - 4000}", "saved_model.pb"))
    finally:
        if scheme == "ram":
            ramfs.remove_tree("ram://stale-test")
