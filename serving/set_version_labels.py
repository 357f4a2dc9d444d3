"""Point the `stable` / `canary` version labels of a TF Serving models.config at real versions.

    python -m serving.set_version_labels --config serving/models.config --serving-dir work/serving
    python -m serving.set_version_labels --config serving/models.config --stable N --canary M

With --serving-dir: canary = the newest integer version directory, stable = the one before
it (both the same when there is only one). Hidden `.tmp-<version>` staging directories of
the Pusher and any non-integer names are ignored, as TF Serving ignores them.

TF Serving refuses to move a label that is in use to a version that is not loaded yet
(and keeps the old labels; the next config poll tries again), so move `canary` to a new
version only once it is AVAILABLE (GET /v1/models/funnel). The file is replaced atomically,
so the server's config poll never reads half of it.
"""

import argparse
import json
import os
import re
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

MODEL_NAME = "funnel"
LABELS = ("stable", "canary")
_VERSION = re.compile(r"[0-9]+")


class NoVersionsError(ValueError):
    """The serving directory holds no model version."""


def list_versions(serving_dir: str) -> List[int]:
    """Integer-named version directories of `serving_dir` (any filesystem tf.io.gfile reads, as
    TF Serving's base path: gs://, s3:// ...), oldest first."""
    from tensorflow.io import gfile  # here: the config rewrite alone needs no TensorFlow

    if not gfile.isdir(serving_dir):
        raise NoVersionsError(f"serving directory {serving_dir} does not exist")
    names = [name.rstrip("/") for name in gfile.listdir(serving_dir)]  # object stores: "name/"
    return sorted(int(name) for name in names
                  if _VERSION.fullmatch(name) and gfile.isdir(os.path.join(serving_dir, name)))


def newest_labels(serving_dir: str) -> Dict[str, int]:
    """{"stable": second newest version, "canary": newest} (both the newest if only one)."""
    versions = list_versions(serving_dir)
    if not versions:
        raise NoVersionsError(
            f"no model versions in {serving_dir}: expected integer-named directories such as "
            f"{os.path.join(serving_dir, '1700000000')} (hidden .tmp-* staging directories do not count)")
    return labels_for(versions)


def labels_for(versions: Sequence[int]) -> Dict[str, int]:
    """{"stable": second newest, "canary": newest} of non-empty `versions` (both the newest if
    there is only one); `funnel serve` resolves its labels with this rule as well."""
    newest = sorted(versions)[-2:]
    return {"stable": newest[0], "canary": newest[-1]}


def set_labels(config_text: str, labels: Dict[str, int], model_name: str = MODEL_NAME) -> str:
    """`config_text` with the labels of `model_name` replaced by `labels`. The leading
    comment block is kept; the rest is regenerated from the parsed proto."""
    config = text_format.Parse(config_text, model_server_config_pb2.ModelServerConfig())
    models = [m for m in config.model_config_list.config if m.name == model_name]
    if len(models) != 1:
        raise ValueError(f"expected one model named {model_name!r} in the config, found {len(models)}")
    for label, version in labels.items():
        if int(version) < 0:
            raise ValueError(f"version of label {label!r} must be a non-negative integer, got {version}")
    models[0].version_labels.clear()
    for label, version in labels.items():
        models[0].version_labels[label] = int(version)
    lines = config_text.splitlines()
    header = []
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            break
        header.append(line)
    return "\n".join(header + [text_format.MessageToString(config).rstrip("\n")]) + "\n"


def rewrite_config(config_path: str, labels: Dict[str, int], model_name: str = MODEL_NAME,
                   out_path: Optional[str] = None) -> str:
    """Writes `config_path` (or `out_path`) with the new labels, atomically; returns the path.
    A local file: the models.config TF Serving's container mounts (a ConfigMap, a volume), made
    atomic by a rename in its own directory, which only a POSIX filesystem offers."""
    with open(config_path) as f:
        text = set_labels(f.read(), labels, model_name)
    target = out_path or config_path
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".models.config.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        mode = os.stat(target).st_mode & 0o777 if os.path.exists(target) else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="models.config to rewrite")
    parser.add_argument("--serving-dir", help="serving directory: stable/canary = the two newest versions")
    parser.add_argument("--stable", type=int, help="explicit stable version (with --canary)")
    parser.add_argument("--canary", type=int, help="explicit canary version (with --stable)")
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--out", help="write here instead of rewriting --config in place")
    args = parser.parse_args(argv)
    explicit = (args.stable, args.canary)
    if None not in explicit:
        labels = {"stable": args.stable, "canary": args.canary}
    elif explicit != (None, None):
        parser.error("--stable and --canary go together")
    elif not args.serving_dir:
        parser.error("give --serving-dir, or --stable and --canary")
    try:
        if args.serving_dir and None in explicit:
            labels = newest_labels(args.serving_dir)
        elif args.serving_dir:
            missing = sorted(set(labels.values()) - set(list_versions(args.serving_dir)))
            if missing:
                raise NoVersionsError(f"versions {missing} are not in {args.serving_dir}")
    except NoVersionsError as e:
        print(f"set_version_labels: {e}", file=sys.stderr)
        return 2
    path = rewrite_config(args.config, labels, args.model_name, args.out)
    print(json.dumps({"config": path, "labels": labels}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
