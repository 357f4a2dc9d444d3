"""File access of the ingest, through Beam's FileSystems: the same code reads and writes local
paths, `gs://`, `s3://` and `hdfs://` (and any scheme a Beam FileSystem is registered for).

The ingest runs inside Beam (its readers are DoFns on the workers), so it uses Beam's file
layer, not `tf.io.gfile` (which reads `s3://` and `hdfs://` only with tensorflow-io).
"""

import gzip
import json
from typing import Any, List, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.paths import is_local


def open_bytes(path: str, decompress: bool = False):
    """The file's bytes (gunzipped when `decompress` and the name ends in .gz); Python's gzip
    over the raw stream, so a bad gzip file raises the same OSError / EOFError everywhere."""
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if not (decompress and path.endswith(".gz")):
        return raw
    unzipped = gzip.GzipFile(fileobj=raw, mode="rb")
    unzipped.myfileobj = raw  # closed with it, as when GzipFile opens the file itself
    return unzipped


def arrow_source(path: str):
    """What Arrow's readers take: a local path as it is (Arrow's C++ file reader, the fast
    path of the README commands), any other scheme as a Beam file object."""
    return path if is_local(path) else open_bytes(path)


def list_files(directory: str) -> List[str]:
    """The files directly in `directory`, sorted; none when it does not exist (object stores
    have no directories: a prefix with no object is an empty directory)."""
    return [path for path, _ in list_files_sized(directory)]


def list_files_sized(directory: str) -> List[Tuple[str, int]]:
    """(path, size in bytes) of the files directly in `directory`, as `list_files`."""
    return match_sized(FileSystems.join(directory, "*"))


def match(pattern: str) -> List[str]:
    """The files matching a glob (`*` stays within one directory level), sorted."""
    return [path for path, _ in match_sized(pattern)]


def match_sized(pattern: str) -> List[Tuple[str, int]]:
    """(path, size in bytes) of the files matching a glob, sorted by path: the listing's own
    metadata, no file is opened."""
    return sorted((m.path, m.size_in_bytes) for m in FileSystems.match([pattern])[0].metadata_list)


def read_json(path: str) -> Any:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read())


def write_json(value: Any, path: str, **dump_args) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(json.dumps(value, **dump_args).encode())


def make_dirs(directory: str) -> None:
    """Creates `directory` if missing (a no-op on object stores)."""
    if not FileSystems.exists(directory):
        FileSystems.mkdirs(directory)
