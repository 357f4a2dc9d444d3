"""A Pusher executor whose versions never appear half-written to TF Serving.

TFX's filesystem push copies files into `base/<version>/` in place, so a reader can see a
half-written version directory. Here the copy goes to a hidden sibling (`base/.tmp-<version>`:
TF Serving's file system poller only loads all-digit version directories) and is published
from there, per filesystem:

- POSIX (a local disk, NFS) and HDFS: one directory rename, atomic; the version appears
  complete or not at all.
- Object stores (gs://, s3://, and any other scheme): there are no directories and no atomic
  rename (TF's "rename" of a prefix copies and deletes object by object). The staged files are
  copied into `base/<version>/` with `saved_model.pb` LAST, then the staging copy is deleted.
  TF Serving loads a version from its saved_model.pb: a poll that sees the directory before
  that file fails to load it cleanly (no SavedModel there yet) and TF Serving retries the load
  (`max_num_load_retries`, a minute apart by default), by which time the directory is whole;
  a poll that sees saved_model.pb sees every variable and asset beside it.

A push killed part way (an OOM kill, a lost node) leaves its staging directory behind and, on an
object store, perhaps a version directory without saved_model.pb, which TF Serving can never
load. The next push removes both once they are STALE_STAGING_SECONDS old (versions are the Unix
second a push started; a push takes seconds to minutes, so a younger one may still be running).

Before the rename, the staged copy gets its TF Serving warmup records
(`assets.extra/tf_serving_warmup_requests`, see `serving.warmup`), and every warmup request
is run on it: a model that cannot answer them is never pushed.
"""

import logging
import os
import re
import time
from typing import Any, Dict, List, Tuple

from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio, filesystem
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from pipeline import paths
from serving import warmup

# Schemes whose directory rename is atomic ("" is a local path).
ATOMIC_RENAME_SCHEMES = ("", "file", "hdfs")
# What TF Serving loads a version from: published last on object stores.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
STAGING_PREFIX = ".tmp-"
# A killed push's leftovers are removed by a later push once they are this old (see the docstring).
STALE_STAGING_SECONDS = 3600


def _relative_files(directory: str) -> List[str]:
    """Every file under `directory`, relative to it. A listing can name a file that is not
    there (TF's ram:// lists `assets.extra/w` under `assets/` as `.extra`): each is checked."""
    return [os.path.relpath(os.path.join(root, name), directory)
            for root, _, names in fileio.walk(directory) for name in names
            if fileio.exists(os.path.join(root, name))]


def publish_order(files: List[str]) -> List[str]:
    """The staged files in the order they are published: the SavedModel's graph last."""
    def last(path: str) -> Tuple[bool, str]:
        return (path in SAVED_MODEL_FILES, path)

    return sorted(files, key=last)


def publish(staging: str, final: str) -> None:
    """Makes the staged version visible as `final` (see the module docstring)."""
    if paths.scheme(final) in ATOMIC_RENAME_SCHEMES:
        fileio.rename(staging, final)
        return
    staged = publish_order(_relative_files(staging))
    for path in staged:
        fileio.makedirs(os.path.dirname(os.path.join(final, path)))
        fileio.copy(os.path.join(staging, path), os.path.join(final, path), overwrite=True)
    for path in staged:
        fileio.remove(os.path.join(staging, path))
    try:
        fileio.rmtree(staging)  # the directories, where the filesystem has any
    except filesystem.NotFoundError:
        pass  # on an object store a "directory" goes with its last object


def remove_stale_staging(base: str, now: float, max_age: float = STALE_STAGING_SECONDS) -> List[str]:
    """Removes the staging directories under `base` of pushes started more than `max_age`
    seconds before `now`, with their version directory if it never got a saved_model.pb (a
    push killed while publishing to an object store). Returns the paths removed."""
    removed = []
    for name in fileio.listdir(base):
        match = re.fullmatch(re.escape(STAGING_PREFIX) + r"(\d+)", name.rstrip("/"))
        if not match or int(match.group(1)) >= now - max_age:
            continue
        version = os.path.join(base, match.group(1))
        partial = fileio.exists(version) and not any(
            fileio.exists(os.path.join(version, f)) for f in SAVED_MODEL_FILES)
        for path in [os.path.join(base, name.rstrip("/"))] + ([version] if partial else []):
            try:
                fileio.rmtree(path)
            except filesystem.NotFoundError:
                pass  # another push removed it first
            removed.append(path)
    if removed:
        logging.getLogger(__name__).warning("removed what killed pushes left: %s", ", ".join(removed))
    return removed


class Executor(tfx_pusher.Executor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        fileio.makedirs(base)
        remove_stale_staging(base, time.time())
        # Versions are Unix seconds; never reuse one (two pushes within a second).
        version = int(time.time())
        while fileio.exists(os.path.join(base, str(version))):
            version += 1
        staging = os.path.join(base, f"{STAGING_PREFIX}{version}")
        final = os.path.join(base, str(version))
        if fileio.exists(staging):
            fileio.rmtree(staging)
        io_utils.copy_dir(self.GetModelPath(input_dict), staging)
        try:
            warmup.prepare_push(staging)
        except Exception:
            fileio.rmtree(staging)
            raise
        publish(staging, final)
        self._MarkPushed(model_push, pushed_destination=final, pushed_version=str(version))
