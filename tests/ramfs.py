"""`ram://` for Beam: a Beam FileSystem over TensorFlow's in-memory filesystem (tf.io.gfile).

TF has `ram://` (a filesystem that is not the local disk and needs no network); Beam has none.
Importing this module registers one (Beam finds FileSystem subclasses by their scheme), so a
test can run code written against Beam's FileSystems and tf.io.gfile on a non-local scheme
offline. In-process only: the memory is the test process's, so Beam must run in memory
(`--direct_running_mode=in_memory`), not in worker processes.
"""

import io
import posixpath

import tensorflow as tf
from apache_beam.io.filesystem import CompressedFile, CompressionTypes, FileMetadata, FileSystem

SCHEME = "ram"
gfile = tf.io.gfile


class _GFileReader(io.RawIOBase):
    def __init__(self, path: str):
        super().__init__()
        self._file = gfile.GFile(path, "rb")

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, buffer):
        data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset, whence=io.SEEK_SET):
        self._file.seek(offset, whence)
        return self._file.tell()

    def tell(self):
        return self._file.tell()

    def close(self):
        self._file.close()
        super().close()


class RamFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *paths)

    def split(self, path):
        return posixpath.split(path)

    def mkdirs(self, path):
        gfile.makedirs(path)

    def has_dirs(self):
        return True

    def _url_dirname(self, url_or_path):
        return posixpath.dirname(url_or_path)

    def _list(self, dir_or_prefix):
        if not gfile.isdir(dir_or_prefix):
            return
        for root, _, names in gfile.walk(dir_or_prefix):
            for name in names:
                yield self.metadata(posixpath.join(root, name))

    def _open(self, path, mode, compression_type):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        # Readers get a standard buffered stream, as from Beam's GCS / S3 / HDFS filesystems.
        raw = io.BufferedReader(_GFileReader(path)) if mode == "rb" else gfile.GFile(path, mode)
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        gfile.makedirs(posixpath.dirname(path))
        return self._open(path, "wb", compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            gfile.copy(source, destination, overwrite=True)

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            gfile.makedirs(posixpath.dirname(destination))
            gfile.rename(source, destination, overwrite=True)

    def exists(self, path):
        return gfile.exists(path)

    def size(self, path):
        return gfile.stat(path).length

    def last_updated(self, path):
        return gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:
            if gfile.isdir(path):
                gfile.rmtree(path)
            elif gfile.exists(path):
                gfile.remove(path)


def copy_tree(source: str, destination: str) -> None:
    """Copies a local directory tree into `destination` (e.g. ram://...)."""
    for root, _, names in gfile.walk(source):
        target = posixpath.join(destination, posixpath.relpath(root, source))
        gfile.makedirs(target)
        for name in names:
            gfile.copy(posixpath.join(root, name), posixpath.join(target, name), overwrite=True)


def remove_tree(path: str) -> None:
    """Deletes a ram:// tree. TF's ram:// rmtree can raise NotFoundError after deleting the
    files (a directory it never recorded); the memory is the test process's anyway."""
    try:
        gfile.rmtree(path)
    except tf.errors.NotFoundError:
        pass
