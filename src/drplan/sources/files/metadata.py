"""Turning what the file system says about an entry into a tree node, and excludes."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from functools import lru_cache

from drplan.repo.tree import Node

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
    stat.S_IFSOCK: "socket",
}


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def node_from_stat(name: bytes, st: os.stat_result) -> Node:
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "file")
    return Node(
        name=name,
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        user=user_name(st.st_uid),
        group=group_name(st.st_gid),
        size=st.st_size if kind == "file" else 0,
        rdev=st.st_rdev if kind in ("chardev", "blockdev") else 0,
        inode=st.st_ino if kind == "file" else 0,
        device=st.st_dev if kind == "file" else 0,
        links=st.st_nlink if kind == "file" else 1,
    )


def read_xattrs(path: bytes) -> list[tuple[bytes, bytes]]:
    """Extended attributes of ``path`` (not following symlinks); none where unsupported."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    found = []
    for name in sorted(names):
        try:
            found.append((os.fsencode(name), os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue  # removed meanwhile, or not readable by us
    return found
