"""Every error drplan reports to a user, with its stable exit code and a hint.

The hierarchy::

    DrplanError                  exit 1   something failed; the message says what
    ├── SourceError              exit 1   what is backed up failed (a database), not a location
    ├── UsageError               exit 2   a command line that cannot be carried out
    ├── PlanNotFoundError        exit 3   no plan file where we looked
    ├── PlanInvalidError         exit 4   YAML syntax, schema or reference errors
    ├── SecretMissingError       exit 5   a ${VAR} the plan references is not set
    ├── LintFailedError          exit 6   `plan lint` found errors (or warnings with --strict)
    ├── RepositoryNotFoundError  exit 10  no repository at the location
    ├── RepositoryLockedError    exit 11  another process holds a conflicting lock
    ├── WrongPasswordError       exit 12  no key file opens with the password
    ├── IntegrityError           exit 13  data failed authentication or the repository is damaged
    ├── PartialBackupError       exit 14  the snapshot was saved, but some files could not be read
    ├── ReplicaMismatchError     exit 15  a copy target holds another repository (or foreign data)
    ├── IncompleteCopyError      exit 16  some locations got the snapshots, others failed (named)
    ├── ThawNeededError          exit 17  a restore needs archived packs that are not thawed yet
    ├── WalConflictError         exit 18  the WAL archive holds a different file under that name
    ├── RecoveryTargetError      exit 19  a recovery target outside the window, WAL missing, or
    │                                     no good/clean point (`--to last-good`/`last-clean`)
    ├── CatalogError             exit 20  the catalog cannot be reached, written or read (damaged)
    ├── DrillFailedError         exit 21  a drill ran and did not pass
    ├── DrillRefusedError        exit 22  a drill was not started (production-like target, ...)
    ├── LocationDownError        exit 23  `locations status`: a location cannot be used (named)
    ├── IncidentStateError       exit 24  the incident cannot take that now (closed, out of order)
    └── CompromisedError         exit 25  `scan`: the newest snapshot looks compromised or suspicious

Storage errors (``drplan.storage.base``) are DrplanErrors too: StorageError (exit 1),
and under it PermissionDenied (exit 26, ``PERMISSION_DENIED``): the location's
credentials may not do this, e.g. delete on an append-only backup host.

`drplan wal fetch` (PostgreSQL's restore_command) exits 1 for a file that is not
archived and 255 for one that is but cannot be read: above 125, PostgreSQL stops
recovery instead of ending it early and starting up short of its target.

Codes are part of the command-line contract: scripts and monitoring depend on
them, so a code never changes meaning. The table lives in docs/cli.md and a test
keeps the two in step. Messages never contain secret values: errors carry
references (``${SLACK_WEBHOOK_URL}``), never what they resolve to.
"""

from __future__ import annotations

from dataclasses import dataclass


class DrplanError(Exception):
    """Base of every error a user may see; carries exit code and hint."""

    exit_code = 1
    # The location an error concerns, once a layer that knows has said so (copies and
    # fan-out read one location and write another: the message must blame the right one).
    origin: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DrplanError):
    """A command line that cannot be carried out (bad flag combination, missing argument)."""

    exit_code = 2


class PlanNotFoundError(DrplanError):
    """No plan file at the path given, in $DRPLAN_PLAN, or at ./drplan.yaml."""

    exit_code = 3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan file, located as precisely as we can."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PlanInvalidError(DrplanError):
    """The plan file is not valid YAML, does not fit the schema, or references unknown names."""

    exit_code = 4

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.path))
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            "\n".join(str(p) for p in self.problems),
            hint=f"{count} {noun} in the plan; fix them and run `drplan plan validate` again",
        )


class SecretMissingError(DrplanError):
    """A secret reference names an environment variable that is not set."""

    exit_code = 5


class LintFailedError(DrplanError):
    """`drplan plan lint` found findings at or above the failing severity."""

    exit_code = 6


class RepositoryNotFoundError(DrplanError):
    """No repository (no config object) at the location."""

    exit_code = 10


class RepositoryLockedError(DrplanError):
    """A live process holds a lock that conflicts with the operation."""

    exit_code = 11


class WrongPasswordError(DrplanError):
    """The password opens none of the repository's key files."""

    exit_code = 12


class IntegrityError(DrplanError):
    """Data failed authentication (modified, truncated, swapped) or the repository is damaged."""

    exit_code = 13


class PartialBackupError(DrplanError):
    """The snapshot was saved, but some source files could not be read; they are listed."""

    exit_code = 14


class SourceError(DrplanError):
    """What is being backed up failed (a database, its tools), not a location: trying the
    next location would only repeat it."""


class ReplicaMismatchError(DrplanError):
    """A copy's target holds a different repository, or objects that are not a repository."""

    exit_code = 15


class IncompleteCopyError(DrplanError):
    """Snapshots reached some locations but not others; the message names the failures."""

    exit_code = 16


class ThawNeededError(DrplanError):
    """Packs a restore needs are in an archive storage class and not readable yet."""

    exit_code = 17


class WalConflictError(DrplanError):
    """The WAL archive holds a different file under the name being pushed."""

    exit_code = 18


class RecoveryTargetError(DrplanError):
    """The target lies outside what the location can recover, or WAL on the way is missing."""

    exit_code = 19


class CatalogError(DrplanError):
    """The catalog database cannot be reached or written (its disk full), is damaged, or
    holds what this drplan cannot read."""

    exit_code = 20


class DrillFailedError(DrplanError):
    """A drill ran and did not pass: a validation failed, or it missed its RTO or RPO."""

    exit_code = 21


class DrillRefusedError(DrplanError):
    """A drill was not started: its scratch target looks like production, has no free port
    or no room, or another drill of the same systems is running."""

    exit_code = 22


class LocationDownError(DrplanError):
    """A location of the plan cannot be used: unreachable, holding no repository (lost) or
    another one (foreign). `locations status` shows every location first, then says which."""

    exit_code = 23


class IncidentStateError(DrplanError):
    """The incident cannot take that now: it is closed, a step comes out of order or was
    recorded already, or systems are not recovered yet."""

    exit_code = 24


class CompromisedError(DrplanError):
    """`drplan scan`: the newest snapshot of the system is judged compromised or
    suspicious (signs of ransomware); the scan's table says which signals and why."""

    exit_code = 25


WAL_FETCH_ABORT = 255
# storage.base.PermissionDenied's code: defined here, as the storage errors build on this module.
PERMISSION_DENIED = 26

# Ordered as in the docstring; docs/cli.md is checked against this by a test.
EXIT_CODES: dict[int, str] = {
    0: "success",
    DrplanError.exit_code: "a command failed (the message says what and why)",
    UsageError.exit_code: "invalid command line: unknown flag, missing argument, bad value",
    PlanNotFoundError.exit_code: "no plan file found (`--plan`, `$DRPLAN_PLAN`, `./drplan.yaml`)",
    PlanInvalidError.exit_code: "the plan is invalid: YAML syntax, schema or reference errors",
    SecretMissingError.exit_code: "an environment variable the plan references for a secret is unset",
    LintFailedError.exit_code: "`plan lint` found errors (or warnings, with `--strict`)",
    RepositoryNotFoundError.exit_code: "no repository at the location (`drplan repo init` creates one)",
    RepositoryLockedError.exit_code: "the repository is locked by another live process",
    WrongPasswordError.exit_code: "wrong password: no key file of the repository opens with it",
    IntegrityError.exit_code: "damaged data: an object failed authentication, or check found errors",
    PartialBackupError.exit_code: "snapshot saved, but some files could not be read (they are listed)",
    ReplicaMismatchError.exit_code: "the copy target holds a different repository: nothing was copied",
    IncompleteCopyError.exit_code: "saved in some locations, but copying to others failed (they are named)",
    ThawNeededError.exit_code: "the restore needs archived data that is not thawed yet (`--request-thaw`)",
    WalConflictError.exit_code: "the WAL archive already holds a different file under that name (another cluster?)",
    RecoveryTargetError.exit_code: "the recovery target is outside the recoverable window, or WAL on the way is missing; or `--to last-good`/`last-clean` found no point in the window that passes the checks (nothing was restored)",
    CatalogError.exit_code: "the catalog database cannot be reached or written (its disk full), is damaged (`drplan catalog rebuild`), or was written by a newer drplan",
    DrillFailedError.exit_code: "a drill did not pass: a validation failed, or it missed its RTO or RPO (the report says which)",
    DrillRefusedError.exit_code: "a drill was not started: its scratch target looks like production, has no free port or no room, or another drill of those systems runs",
    LocationDownError.exit_code: "`locations status` only: a location cannot be used (unreachable, lost or foreign); its row says why",
    IncidentStateError.exit_code: "the incident cannot take that now: it is closed, the step comes out of order (`--out-of-order`) or was recorded already",
    CompromisedError.exit_code: "`scan` only: the newest snapshot looks compromised or suspicious (ransomware signs, a YARA match, a scanner's finding); the table says why",
    PERMISSION_DENIED: "the location's credentials may not do this (the message names the S3 permission: s3:DeleteObject for forget, prune and key remove run from an append-only backup host)",
    70: "internal error: a bug in drplan; rerun with `--debug` and report it",
    130: "interrupted (Ctrl-C)",
    WAL_FETCH_ABORT: "`wal fetch` only: the WAL file is archived but unreadable; PostgreSQL stops recovery",
}
