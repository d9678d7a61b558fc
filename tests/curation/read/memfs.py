"""A tiny in-memory Beam filesystem for tests: ``memtest://bucket/key``.

Beam 2.77 ships no in-memory filesystem; a ``FileSystem`` subclass is registered by being
defined (``FileSystems`` looks schemes up among the subclasses), so importing this module
makes ``memtest://`` paths readable through ``FileSystems.open``/``match``/``exists`` like
``gs://`` ones, offline. Files live in ``MemFileSystem.files`` (path -> bytes), shared by
every instance in the process (the FnApiRunner runs in-process by default).
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from typing import Any, ClassVar

from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem

SCHEME = "memtest"


class MemFileSystem(FileSystem):
    files: ClassVar[dict[str, bytes]] = {}

    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        return posixpath.split(path)

    def mkdirs(self, path: str) -> None:
        pass

    def has_dirs(self) -> bool:
        return False

    def _list(self, dir_or_prefix: str) -> Iterator[FileMetadata]:
        for path, data in sorted(self.files.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), 0.0)

    def create(self, path: str, mime_type: str = "", compression_type: str = CompressionTypes.AUTO) -> Any:
        files = self.files

        class _Writer(io.BytesIO):
            def close(self) -> None:
                files[path] = self.getvalue()
                super().close()

        return _Writer()

    def open(self, path: str, mime_type: str = "", compression_type: str = CompressionTypes.AUTO) -> io.BytesIO:
        if path not in self.files:
            raise FileNotFoundError(path)
        return io.BytesIO(self.files[path])

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        for src, dst in zip(source_file_names, destination_file_names, strict=True):
            self.files[dst] = self.files[src]

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        for src, dst in zip(source_file_names, destination_file_names, strict=True):
            self.files[dst] = self.files.pop(src)

    def exists(self, path: str) -> bool:
        return path in self.files

    def size(self, path: str) -> int:
        return len(self.files[path])

    def last_updated(self, path: str) -> float:
        return 0.0

    def checksum(self, path: str) -> str:
        return str(hash(self.files[path]))

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, len(self.files[path]), 0.0)

    def delete(self, paths: list[str]) -> None:
        for path in paths:
            self.files.pop(path, None)
