"""Reading base backup tar streams: what PostgreSQL writes comes through byte for byte,
whatever the read sizes; anything broken or foreign is refused, never half-read."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from drplan.sources.postgres import tarstream


def ustar(entries: list[tuple[str, bytes | str | None]]) -> bytes:
    """A tar as PostgreSQL writes one: ustar headers; bytes are a file, a str a symlink
    target, None a directory; two zero blocks at the end."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, what in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o600, 1_700_000_000
            if what is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            elif isinstance(what, str):
                info.type, info.linkname = tarfile.SYMTYPE, what
                tar.addfile(info)
            else:
                info.size = len(what)
                tar.addfile(info, io.BytesIO(what))
    return out.getvalue()


class Trickle:
    """A source that hands out at most ``step`` bytes per read, as a pipe may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.at, self.step = data, 0, step

    def readinto(self, buffer: memoryview) -> int:
        n = min(len(buffer), self.step, len(self.data) - self.at)
        buffer[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n


ENTRIES: list[tuple[str, bytes | str | None]] = [
    ("base", None),
    ("base/1", None),
    ("PG_VERSION", b"18\n"),
    ("base/1/1259", os.urandom(8192 * 3 + 17)),  # not a multiple of the block: padding
    ("base/1/2608", b""),
    ("pg_tblspc/16384", "/srv/ts1"),
    ("backup_label", b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"),
]


@pytest.mark.parametrize("step", [1, 511, 512, 4096, 1 << 20])
def test_every_member_arrives_whole_whatever_the_read_sizes(step: int) -> None:
    source = Trickle(ustar(ENTRIES), step)
    seen: list[tuple[str, bytes | str | None]] = []
    for info, data in tarstream.members(source):
        if info.isdir():
            seen.append((info.name, None))
        elif info.issym():
            seen.append((info.name, info.linkname))
        else:
            assert data.left == info.size
            seen.append((info.name, bytes(data.read())))
    tarstream.drain(source)
    assert seen == ENTRIES
    assert source.at == len(source.data)  # drained: the writer is never left blocked


def test_data_a_consumer_leaves_unread_is_skipped() -> None:
    source = Trickle(ustar(ENTRIES), 1000)
    names = [info.name for info, _ in tarstream.members(source)]
    assert names == [name for name, _ in ENTRIES]


def test_readinto_stops_at_the_member_end() -> None:
    big = bytes(range(256)) * 40
    source = Trickle(ustar([("a", big), ("b", b"next")]), 1 << 20)
    got = []
    for _, data in tarstream.members(source):
        buffer = memoryview(bytearray(4096))
        parts = []
        while n := data.readinto(buffer):
            parts.append(bytes(buffer[:n]))
        got.append(b"".join(parts))
    assert got == [big, b"next"]


def read_all(source: Trickle) -> None:
    for _, member in tarstream.members(source):
        member.read()


@pytest.mark.parametrize("cut", [100, 512 + 100, 512 + 8192 + 3])
def test_a_stream_cut_short_is_refused(cut: int) -> None:
    data = ustar([("a", b"x" * 9000), ("b", b"y")])
    with pytest.raises(tarstream.TarStreamError, match="ended"):
        read_all(Trickle(data[:cut], 4096))


def test_a_stream_without_an_end_block_is_refused() -> None:
    data = ustar([("a", b"x" * 10)])
    with pytest.raises(tarstream.TarStreamError, match="end-of-archive"):
        list(tarstream.members(Trickle(data[:1024], 4096)))


def test_a_damaged_header_is_refused() -> None:
    data = bytearray(ustar([("a", b"x" * 10)]))
    data[0:1] = b"Z"  # the checksum no longer matches
    with pytest.raises(tarstream.TarStreamError, match="damaged tar header"):
        list(tarstream.members(Trickle(bytes(data), 4096)))


def test_headers_postgresql_never_writes_are_refused() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("é" * 120)  # a long non-ASCII name needs a pax header
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(tarstream.TarStreamError, match="PostgreSQL never writes"):
        list(tarstream.members(Trickle(out.getvalue(), 4096)))
