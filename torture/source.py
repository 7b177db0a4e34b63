"""Source trees that change between trials, and manifests to compare restores with.

A tree is a few dozen files: small configuration files, compressible logs, random
blobs (some larger than a chunk, so a backup has several packs to write and a kill
lands between them), and files that share content (deduplication). Each trial
changes it a little, as a day changes a server: files added, rewritten, appended
to, removed.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

Manifest = dict[str, str]  # relative path -> SHA-256 of the content


class SourceTree:
    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        root.mkdir(parents=True, exist_ok=True)
        self.shared = rng.randbytes(300_000)
        for i in range(24):
            self._write(i)

    def _write(self, i: int) -> None:
        rng = self.rng
        kind = i % 4
        directory = self.root / f"d{i % 5}"
        directory.mkdir(exist_ok=True)
        path = directory / f"f{i}"
        if kind == 0:
            path.write_text(
                "".join(f"key{k} = {rng.random()}\n" for k in range(rng.randint(1, 40)))
            )
        elif kind == 1:
            path.write_text(
                "".join(f"2026-12-07 line {k} ok\n" for k in range(rng.randint(100, 20_000)))
            )
        elif kind == 2:
            path.write_bytes(rng.randbytes(rng.randint(1, 1_500_000)))
        else:
            path.write_bytes(self.shared + rng.randbytes(rng.randint(0, 5000)))

    def change(self) -> None:
        """What a day does to a server's files."""
        rng = self.rng
        files = self.files()
        for _ in range(rng.randint(1, 4)):
            action = rng.choice(["add", "rewrite", "append", "remove"])
            if action == "add" or not files:
                self._write(rng.randint(0, 10_000))
            elif action == "rewrite":
                self._write(int(rng.choice(files).name[1:]))
            elif action == "append":
                with rng.choice(files).open("ab") as f:
                    f.write(rng.randbytes(rng.randint(1, 200_000)))
            elif len(files) > 8:
                victim = rng.choice(files)
                victim.unlink()
                files.remove(victim)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def manifest(self) -> Manifest:
        return manifest(self.root)


def manifest(root: Path) -> Manifest:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def differences(expected: Manifest, found: Manifest) -> list[str]:
    """What a restore got wrong, at most a few lines."""
    wrong = [f"missing {p}" for p in sorted(expected.keys() - found.keys())]
    wrong += [f"extra {p}" for p in sorted(found.keys() - expected.keys())]
    wrong += [f"different {p}" for p in sorted(expected) if p in found and found[p] != expected[p]]
    return wrong[:5]
