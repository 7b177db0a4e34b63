"""The archive stream of BASE_BACKUP, read as the server sends it (no server needed)."""

from __future__ import annotations

import io
import tarfile
from typing import Any

from drplan.sources.postgres import tarstream
from drplan.sources.postgres.protocol import _Archive, _archives, _Messages


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Script:
    """get_copy_data as libpq gives it: (size, data), -1 at the end of the COPY."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    def get_copy_data(self, _async: int) -> tuple[int, Any]:
        if not self.messages:
            return -1, b""
        message = self.messages.pop(0)
        return len(message), memoryview(message)


def test_progress_messages_inside_an_archive_do_not_end_it() -> None:
    base = tar_of({"PG_VERSION": b"18\n", "base/1/1259": b"x" * 50_000})
    space = tar_of({"PG_18_202506291/5/16385": b"y" * 30_000})
    stream = [b"n16384.tar\0/srv/ts1\0"]
    stream += [b"d" + space[i : i + 8192] for i in range(0, len(space), 8192)]
    stream += [b"nbase.tar\0\0", b"d" + base[:10_000], b"p\0\0\0\0\0\0\0\x10"]
    stream += [b"d" + base[10_000:40_000], b"p\0\0\0\0\0\0\0\x20", b"d" + base[40_000:]]
    stream += [b"m", b'd{"PostgreSQL-Backup-Manifest-Version": 1}']
    messages = _Messages(Script(stream))  # type: ignore[arg-type]
    seen: dict[str, bytes] = {}
    manifest = b""
    for kind, payload in _archives(messages):
        if kind == "manifest":
            manifest = payload
            continue
        archive = _Archive(messages)
        for member, data in tarstream.members(archive):
            seen[f"{payload.decode() or 'base'}:{member.name}"] = bytes(data.read())
        tarstream.drain(archive)
    assert seen == {
        "16384:PG_18_202506291/5/16385": b"y" * 30_000,
        "base:PG_VERSION": b"18\n",
        "base:base/1/1259": b"x" * 50_000,
    }
    assert manifest.startswith(b'{"PostgreSQL-Backup-Manifest-Version"')
