"""The loaded versions of one model (TF Serving's `latest { num_versions }` policy over a base
path): which versions are complete on disk, loading and swapping them, their states for
GetModelStatus, and resolving a request's ModelSpec to one of them. `serving/server.py` puts the
gRPC services in front of it."""

import gc
import logging
import os
import threading
from typing import Dict, Optional, Set, Tuple

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from serving.servable import DEFAULT_MAX_MESSAGE_BYTES, RequestError, Servable, invalid, status_from_exception
from serving.set_version_labels import LABELS, labels_for

LOG = logging.getLogger("funnel.serving")
# TF Serving's `latest { num_versions: 2 }` in serving/models.config: stable and canary.
DEFAULT_NUM_VERSIONS = 2
_State = get_model_status_pb2.ModelVersionStatus.State


def list_versions(base_path: str) -> Dict[int, str]:
    """{version: directory} of the complete versions under a base path (TF Serving's scan:
    integer names only; a directory without saved_model.pb is not complete yet). Any
    filesystem tf.io.gfile reads, as TF Serving's base path."""
    try:
        names = tf.io.gfile.listdir(base_path)
    except tf.errors.OpError:
        return {}
    versions = {}
    for name in names:
        name = name.rstrip("/")  # object stores list directories as "name/"
        if not name.isdigit():  # also rejects hidden and negative names
            continue
        path = os.path.join(base_path, name)
        if any(tf.io.gfile.exists(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            versions[int(name)] = path
    return versions


class ModelManager:
    """Polls a base path and keeps the `num_versions` newest loadable versions loaded (TF
    Serving's `latest { num_versions }` policy). The loaded set is a dict that is replaced,
    never changed in place, so a request resolves its version once and finishes on it even
    if that version is unloaded meanwhile (the servable goes when its last request does)."""

    def __init__(self, model_name: str, base_path: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 num_versions: int = DEFAULT_NUM_VERSIONS):
        if num_versions < 1:
            raise ValueError(f"the number of versions to serve (--num-versions) must be at least 1, "
                             f"got {num_versions}")
        self.model_name = model_name
        self.base_path = base_path
        self.max_message_bytes = max_message_bytes
        self.num_versions = num_versions
        self._servables: Dict[int, Servable] = {}
        self._lock = threading.Lock()
        self._available = threading.Event()
        self._states: Dict[int, Tuple[int, int, str]] = {}  # version -> (state, error code, message)
        self._failed: Set[int] = set()  # versions that failed to load (their message is in _states)
        self._warned_empty = False

    @property
    def servables(self) -> Dict[int, Servable]:
        """{version: servable} of the loaded versions (a snapshot: never changed in place)."""
        return self._servables

    @property
    def servable(self) -> Optional[Servable]:
        """The newest loaded version (what a request without a version gets)."""
        servables = self._servables
        return servables[max(servables)] if servables else None

    def wait_until_available(self, timeout: Optional[float]) -> bool:
        return self._available.wait(timeout)

    def states(self) -> Dict[int, Tuple[int, int, str]]:
        with self._lock:
            return dict(self._states)

    def _set_state(self, version: int, state: int, code: grpc.StatusCode = grpc.StatusCode.OK, message: str = ""):
        with self._lock:
            self._states[version] = (state, code.value[0], message)

    def poll(self) -> None:
        versions = list_versions(self.base_path)
        self._failed &= set(versions)  # a removed version may be pushed again
        candidates = {v: p for v, p in versions.items() if v not in self._failed}
        if not candidates:
            if not self._warned_empty:
                current = sorted(self._servables)
                LOG.warning("no loadable version under %s%s", self.base_path,
                            f"; still serving versions {current}" if current else "")
                self._warned_empty = True
            return
        self._warned_empty = False
        while True:  # newest first; a version that fails leaves its place to the next older one
            wanted = sorted(candidates)[-self.num_versions:]
            missing = [v for v in wanted if v not in self._servables]
            if not missing:
                break
            version = max(missing)
            servable = self._load(version, candidates[version])
            if servable is None:
                del candidates[version]
            else:
                self._install(servable, candidates)
        self._install(None, candidates)  # unloads versions whose directory went away
        if self._servables:
            self._available.set()

    def _load(self, version: int, path: str) -> Optional[Servable]:
        LOG.info("loading %s version %d from %s", self.model_name, version, path)
        self._set_state(version, _State.LOADING)
        try:
            servable = Servable(version, path, self.max_message_bytes)
            warmed = servable.warm_up(self.model_name)
        except Exception as e:  # noqa: BLE001 - any load failure keeps the loaded versions serving
            code, message = status_from_exception(e)
            # Logged once: the version is not retried until its directory is removed (TF
            # Serving retries --max_num_load_retries times, then gives up as well).
            LOG.error("failed to load %s version %d (serving %s): %s", self.model_name, version,
                      f"versions {sorted(self._servables)}" if self._servables else "nothing", message)
            self._failed.add(version)
            self._set_state(version, _State.END, code, message)
            return None
        LOG.info("loaded %s version %d%s", self.model_name, version,
                 f" (warmed up with {warmed} requests)" if warmed else "")
        return servable

    def _install(self, new: Optional[Servable], candidates: Dict[int, str]) -> None:
        """Serves `new` beside the loaded versions, keeping the `num_versions` newest that are
        still on disk (all of them if none is: the last ones keep serving)."""
        loaded = dict(self._servables)
        if new is not None:
            loaded[new.version] = new
        keep = sorted(v for v in loaded if v in candidates)[-self.num_versions:]
        if not keep:
            return
        ok = grpc.StatusCode.OK.value[0]
        dropped = sorted(v for v in loaded if v not in keep)
        with self._lock:  # the swap and the states change together, as GetModelStatus sees them
            self._servables = {v: loaded[v] for v in keep}
            if new is not None:
                self._states[new.version] = (_State.AVAILABLE, ok, "")
            for version in dropped:
                self._states[version] = (_State.END, ok, "")
        if new is not None:
            LOG.info("serving %s versions %s (%s)", self.model_name, keep,
                     ", ".join(f"{k}={v}" for k, v in labels_for(keep).items()))
        if dropped:
            del loaded, new
            gc.collect()  # unloaded versions' TF resources go now (or when their last request ends)
            LOG.info("unloaded %s versions %s", self.model_name, dropped)

    def resolve(self, model_spec) -> Servable:
        """The servable a ModelSpec asks for, or TF Serving's error. Labels: `canary` is the
        newest loaded version, `stable` the one before it (the newest if only one is loaded),
        as `serving.set_version_labels` points TF Serving's labels."""
        name = model_spec.name
        choice = model_spec.WhichOneof("version_choice")
        servables = self._servables
        if choice == "version_label":
            label = model_spec.version_label
            if label not in LABELS or name != self.model_name:  # TF Serving looks labels up per model
                raise invalid(f"Unrecognized servable version label: {label}")
            version = labels_for(servables)[label] if servables else None
        elif choice == "version":
            version = model_spec.version.value
        else:
            version = max(servables) if servables else None
        if name != self.model_name or version not in servables:
            wanted = f"Specific({name}, {version})" if choice == "version" else f"Latest({name})"
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
        return servables[version]
