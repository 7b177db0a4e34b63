"""Which paths a file backup leaves out: glob patterns, from the command line or a file.

It imports nothing from drplan, so that the scan ahead (``scanner.py``, a child process
started without drplan's imports) matches exactly as the walk does.
"""

from __future__ import annotations

import fnmatch
import os


class Excludes:
    """Glob patterns: with a '/', matched against the whole path; without, against each name."""

    def __init__(self, patterns: list[str]) -> None:
        self.path_patterns = [p.rstrip("/") for p in patterns if "/" in p.rstrip("/")]
        self.name_patterns = [p.rstrip("/") for p in patterns if "/" not in p.rstrip("/") and p]

    def excluded(self, path: bytes, name: bytes) -> bool:
        if not self.name_patterns and not self.path_patterns:
            return False
        text_name = os.fsdecode(name)
        if any(fnmatch.fnmatchcase(text_name, p) for p in self.name_patterns):
            return True
        text_path = os.fsdecode(path)
        return any(fnmatch.fnmatchcase(text_path, p) for p in self.path_patterns)


def read_exclude_file(path: str) -> list[str]:
    """Patterns from a file: one per line, '#' comments and blank lines ignored."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
