"""Objects and names the storage tests share."""

from __future__ import annotations

import random

from drplan.storage.s3 import MIN_PART_SIZE

PACK = "data/ab/ab" + "01" * 31
OTHER_PACK = "data/ab/ab" + "02" * 31
FAR_PACK = "data/cd/cd" + "03" * 31
LARGE = 2 * MIN_PART_SIZE + 1  # three parts at the 5 MiB threshold the S3 fixtures use
SENTINEL = "wrong-secret-SENTINEL-7f3a"


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)
