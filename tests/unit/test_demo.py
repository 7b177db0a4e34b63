"""`make demo` runs examples/smartwatts/demo.sh: it must succeed and show what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_demo_script_validates_lints_and_shows_the_smartwatts_plan() -> None:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        COLUMNS="160",
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "smartwatts" / "demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "valid plan 'SmartWatts Energy Monitoring Platform'" in out
    assert "lint exit code 6" in out
    assert "Systems (recovery order)" in out
    assert '"critical": 14400' in out
    # The live round trip: backup, an incremental backup that stores little, restore, check.
    assert "0 new, 1 changed, 201 unchanged files" in out
    assert "M " in out
    assert "meter-7.conf" in out
    assert "restored tree is identical to the source" in out
    assert "read back" in out
    assert ": no errors" in out
    assert "created as a replica" in out
    assert "restored from the replica: identical to the source" in out
    assert "demo-repository-password" not in out
    assert "\x1b[" not in out  # no escape codes when not on a terminal
    # The demo's placeholder secrets are set, and never printed.
    for value in ("demo-not-a-secret", "127.0.0.1:9/demo-slack"):
        assert value not in out
