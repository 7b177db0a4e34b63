"""Local filesystem backend: objects are files, written so that a crash leaves them whole or absent.

Each write goes to a temporary file in the destination directory, is fsynced,
renamed over the final name, and the directory is fsynced so the new entry itself
survives a power loss. Temporary files (``.tmp-*``) left by a crash are ignored by
``list`` and removed by prune.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from drplan.errors import IntegrityError
from drplan.storage.base import NotFound, ObjectInfo, StorageError, TransientError

TEMP_PREFIX = ".tmp-"


class LocalStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def url(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise StorageError(f"invalid object name {name!r}")
        return self.root / name

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with self._path(name).open("rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except FileNotFoundError:
            raise NotFound(f"{self.url}: object {name} does not exist") from None
        except OSError as exc:
            raise _translate(exc, self.url, name) from None

    def verify(self, name: str, data: bytes) -> None:
        if self.read(name) != data:
            raise IntegrityError(f"{self.url}: object {name} does not hold what was written")

    @property
    def lock_days(self) -> int | None:
        return None

    def locked_until(self, name: str) -> datetime | None:
        self.stat(name)
        return None  # a file system has no write-once lock

    def lock_until(self, name: str, until: datetime) -> None:
        raise StorageError(
            f"{self.url}: a local location cannot lock objects",
            hint="use an S3 location with Object Lock for immutable copies",
        )

    @property
    def archives(self) -> bool:
        return False

    def thaw_state(self, name: str) -> str:
        self.stat(name)
        return "hot"

    def request_thaw(self, name: str, days: int, tier: str) -> None:
        self.stat(name)  # always readable: nothing to ask for

    def write(self, name: str, data: bytes, *, hot: bool = False,
              content_type: str | None = None) -> None:  # fmt: skip
        path = self._path(name)
        temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            _make_parents(path.parent)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise _translate(exc, self.url, name) from None

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
            _fsync_dir(path.parent)
        except FileNotFoundError:
            raise NotFound(f"{self.url}: object {name} does not exist") from None
        except OSError as exc:
            raise _translate(exc, self.url, name) from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        directory = prefix.rpartition("/")[0]
        base = self.root / directory if directory else self.root
        if not base.is_dir():
            return
        for dirpath, _dirnames, filenames in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for filename in filenames:
                if filename.startswith(TEMP_PREFIX):
                    continue
                name = filename if rel == "." else f"{rel}/{filename}"
                if name.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(os.path.join(dirpath, filename))
                        yield ObjectInfo(name, st.st_size, st.st_mtime)

    def stat(self, name: str) -> ObjectInfo:
        try:
            return ObjectInfo(name, self._path(name).stat().st_size)
        except FileNotFoundError:
            raise NotFound(f"{self.url}: object {name} does not exist") from None
        except OSError as exc:
            raise _translate(exc, self.url, name) from None

    def exists(self) -> bool:
        return self.root.is_dir()

    def free_space(self) -> int | None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize


def _make_parents(directory: Path) -> None:
    """Create ``directory`` and what is missing above it, each made durable in its parent:
    a crash must not lose the directory of an object reported durable."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
            created.mkdir()
        _fsync_dir(created.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _translate(exc: OSError, url: str, name: str) -> StorageError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"{url}: no space left on device while writing {name}",
            hint="free space or use another location; the repository is unchanged",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"{url}: {reason} ({name})", hint="check permissions of the repository")
    if exc.errno in (errno.EINTR, errno.EAGAIN, errno.EBUSY):
        return TransientError(f"{url}: {reason} ({name})")
    return StorageError(f"{url}: {reason} ({name})")
