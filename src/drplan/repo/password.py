"""Where the repository password comes from: --password-file, $DRPLAN_PASSWORD, or the plan's command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from drplan.errors import DrplanError, UsageError

PASSWORD_ENV = "DRPLAN_PASSWORD"
PASSWORD_FILE_ENV = "DRPLAN_PASSWORD_FILE"


def read_password(password_file: str | None = None, password_command: str | None = None) -> bytes:
    """The password, from the first source given: a file, the environment, or a command."""
    path = password_file or os.environ.get(PASSWORD_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read password file {path}: {exc.strerror}") from None
        return _nonempty(text.rstrip("\r\n"), f"password file {path}")
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value.encode()
    if password_command:
        try:
            proc = subprocess.run(
                password_command,
                shell=True,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DrplanError("the plan's password_command did not finish within 60 s") from None
        if proc.returncode != 0:
            # stderr may say why; stdout is never shown, it may hold the password.
            reason = proc.stderr.strip().splitlines()[-1:] or ["no message"]
            raise DrplanError(
                f"the plan's password_command failed with exit code {proc.returncode}: {reason[0]}",
                hint="run it by hand to see why",
            )
        return _nonempty(proc.stdout.rstrip("\r\n"), "the plan's password_command")
    raise UsageError(
        "no repository password given",
        hint=f"set ${PASSWORD_ENV}, pass --password-file FILE, or set repository.password_command in the plan",
    )


def _nonempty(text: str, source: str) -> bytes:
    if not text:
        raise UsageError(f"{source} gave an empty password")
    return text.encode()
