"""Paths that may be URIs: `gs://bucket/x`, `s3://...`, `hdfs://...` as well as local paths."""

import os


def scheme(path: str) -> str:
    """The URI scheme of `path` ("gs", "s3", "hdfs", ...); "" for a local path."""
    return path.split("://", 1)[0] if "://" in path else ""


def is_local(path: str) -> bool:
    return scheme(path) in ("", "file")


def absolute(path: str) -> str:
    """A local path made absolute; a URI as it is (os.path.abspath would turn gs://b/x into a
    local directory named gs:)."""
    return os.path.abspath(path) if not scheme(path) else path
