"""Where a directory listing sits in a snapshot: the path a damaged tree is reported at.

Trees do not know their parents, so this walks the snapshot's listings from its root
until one names the tree as a subtree. It runs only when a tree turned out damaged,
to tell the user which directory of which snapshot that is.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from drplan.errors import IntegrityError
from drplan.storage import StorageError

Listing = Callable[[bytes], dict[bytes, dict[str, Any]]]


def path_of(listing: Listing, root: bytes, tree_id: bytes) -> str | None:
    """The path of the directory listed by ``tree_id`` in the snapshot whose root tree is
    ``root`` (``/`` for the root itself), or None when the snapshot does not hold it.
    Breadth first, each tree once; listings that cannot be read are passed over."""
    if root == tree_id:
        return "/"
    seen, queue = {root}, deque([(root, "")])
    while queue:
        current, path = queue.popleft()
        try:
            entries = listing(current)
        except (IntegrityError, StorageError):
            continue
        for name, entry in entries.items():
            try:
                subtree = bytes.fromhex(entry.get("subtree") or "")
            except (TypeError, ValueError):
                continue
            if not subtree or subtree in seen:
                continue
            child = f"{path}/{os.fsdecode(name)}"
            if subtree == tree_id:
                return child
            seen.add(subtree)
            queue.append((subtree, child))
    return None
