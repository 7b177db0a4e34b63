"""Whole packs held in memory while a restore reads many small blobs from them.

A restore of many small files would otherwise read each blob with its own request
(its own open and seek locally, its own GET on S3). Packs known to hold many wanted
blobs are read once, whole, and kept in a small LRU; memory is bounded by
``max_packs`` times the pack size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from drplan.storage import Storage


class PackCache:
    def __init__(self, storage: Storage, hot: set[str], max_packs: int = 4) -> None:
        self.storage = storage
        self.hot = hot
        self.max_packs = max_packs
        self._packs: OrderedDict[str, bytes] = OrderedDict()
        self._loading: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def read(self, pack_id: str, name: str, offset: int, length: int) -> bytes:
        while True:
            with self._lock:
                data = self._packs.get(pack_id)
                if data is not None:
                    self._packs.move_to_end(pack_id)
                    return data[offset : offset + length]
                waiting = self._loading.get(pack_id)
                if waiting is None:
                    self._loading[pack_id] = threading.Event()
                    break
            waiting.wait()
        try:
            data = self.storage.read(name)
            with self._lock:
                self._packs[pack_id] = data
                while len(self._packs) > self.max_packs:
                    self._packs.popitem(last=False)
        finally:
            # Waiters wake whether the read succeeded or not: after a failure one of them
            # tries again (and meets the failure itself) instead of waiting for ever.
            with self._lock:
                event = self._loading.pop(pack_id)
            event.set()
        return data[offset : offset + length]
