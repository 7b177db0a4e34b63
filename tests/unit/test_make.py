"""The README's set-up promises: `make test` installs the Debian packages it needs or
stops at once with the line that does, and the benchmarks stand apart from the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

MISSING = "drplan-test-missing-package"  # no such package: it must never reach apt-get


@pytest.fixture
def checkout() -> Iterator[Path]:
    """The Makefile and scripts/ in a directory anybody can read, with one package listed
    for `make test` whose file is nowhere; and a `sudo` that refuses, as without rights."""
    base = Path(tempfile.mkdtemp(prefix="drplan-make-"))
    try:
        base.chmod(0o755)
        shutil.copy(ROOT / "Makefile", base / "Makefile")
        shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
        shutil.copytree(ROOT / "scripts", base / "scripts")
        with open(base / "scripts" / "system-packages.list", "a") as f:
            f.write(f"test {MISSING} /nonexistent/{MISSING}\n")
        no_sudo = base / "no-sudo"
        no_sudo.mkdir()
        (no_sudo / "sudo").write_text(
            "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n"
        )
        (no_sudo / "sudo").chmod(0o755)
        for path in base.rglob("*"):
            path.chmod(path.stat().st_mode | 0o005)
        yield base
    finally:
        shutil.rmtree(base)


def _as_unprivileged(argv: list[str]) -> list[str]:
    return ["/usr/sbin/runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


def test_make_test_without_root_stops_before_anything_with_the_apt_get_line(
    checkout: Path,
) -> None:
    env = {
        "PATH": f"{checkout / 'no-sudo'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(checkout),
        "PYTHON": sys.executable if os.geteuid() != 0 else "/usr/bin/python3",
    }
    proc = subprocess.run(
        _as_unprivileged(["make", "--no-print-directory", "-C", str(checkout), "test"]),
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    install = [line for line in lines if line.strip().startswith("sudo apt-get install -y ")]
    assert len(install) == 1, proc.stderr
    assert MISSING in install[0].split()
    assert f"make test needs packages that are not installed ({MISSING}" in proc.stderr
    # Nothing ran: no virtualenv made, no pip, no pytest.
    assert not (checkout / ".venv").exists()
    assert "pip" not in proc.stdout + proc.stderr


def test_the_package_script_is_quiet_when_everything_is_installed() -> None:
    """What CI and a prepared machine see: `make test` goes straight to its work."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "system-packages"), "test"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
        timeout=600,  # a first run as root installs what is missing
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    listed = (ROOT / "scripts" / "system-packages.list").read_text()
    for line in listed.splitlines():
        fields = line.split()
        if fields and fields[0] == "test":
            assert Path(fields[2]).exists(), line


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*_bench.py")))
def test_benchmarks_run_without_pytest_or_the_test_suite(script: str) -> None:
    """`make bench` installs the benchmarks' packages, not the tests': a benchmark that
    imports the test suite fails on a fresh clone."""
    blocked = (
        "import runpy, sys\n"
        "sys.modules['pytest'] = None\n"  # any import of them now fails
        "sys.modules['tests'] = None\n"
        f"sys.argv = [{script!r}, '--help']\n"
        f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
        f"runpy.run_path({str(ROOT / 'bench' / script)!r}, run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", blocked],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
