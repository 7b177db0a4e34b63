"""Where `drplan secrets rotate` takes the values the plan does not read: each new value,
and, to prove one refused, an old value the plan no longer reads.

A value is named by the variable its reference names (``PG_PASSWORD`` for
``${PG_PASSWORD}``); the repository password is ``DRPLAN_PASSWORD`` whichever source the
plan reads it from. Values come from a file of ``NAME=value`` lines that only its owner
may read or write (the value is everything after the first ``=``, as is: no quotes, no
escapes; blank lines and ``#`` comments are skipped), or from environment variables
``PREFIX + NAME`` (``NEW_PG_PASSWORD``). Nothing here prints a value: an error names the
file, the line number and the name, never what follows the ``=``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping

from drplan.errors import UsageError
from drplan.security.secrets_inventory import Credential, read_value

REPOSITORY_NAME = "DRPLAN_PASSWORD"  # the repository password's name, whatever its source
NEW_PREFIX = "NEW_"
OLD_PREFIX = "OLD_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name_of(credential: Credential) -> str:
    """The name a value for ``credential`` is given under."""
    reference = credential.reference
    if reference.startswith("${") and reference.endswith("}"):
        return reference[2:-1]
    return REPOSITORY_NAME


def read_values_file(path: str) -> dict[str, bytes]:
    """The ``NAME=value`` lines of ``path``; UsageError when others than its owner may read
    or write it (anyone who could read it holds every new credential), or a line is not one."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise UsageError(
            f"{path} may be read or written by others than its owner",
            hint=f"chmod 600 {path}; and as the values in it are new credentials, make new"
            " ones if others could read them",
        )
    return parse_values(data.decode("utf-8", "surrogateescape").splitlines(), path)


def parse_values(lines: Iterable[str], where: str) -> dict[str, bytes]:
    """NAME -> value of ``NAME=value`` lines; errors name the line, never its value."""
    values: dict[str, bytes] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not _NAME.fullmatch(name):
            raise UsageError(f"{where}:{number} is not a NAME=value line",
                             hint="one credential per line: PG_PASSWORD=...")  # fmt: skip
        if not value:
            raise UsageError(f"{where}:{number}: {name} has an empty value")
        if name in values:
            raise UsageError(f"{where}:{number}: {name} is given twice")
        values[name] = value.encode("utf-8", "surrogateescape")
    return values


def from_environment(prefix: str, environ: Mapping[str, str]) -> dict[str, bytes]:
    """NAME -> value of each non-empty ``PREFIX + NAME`` variable."""
    return {
        key[len(prefix) :]: value.encode("utf-8", "surrogateescape")
        for key, value in environ.items()
        if key.startswith(prefix) and len(key) > len(prefix) and value
    }


def new_values(
    values_file: str | None, prefix: str | None, environ: Mapping[str, str]
) -> tuple[dict[str, bytes], str]:
    """The new values, and where they came from (said in errors): the file, or the
    environment under ``prefix`` (``NEW_`` when neither is given). Not both: a name in
    each would leave the operator guessing which one was proven."""
    if values_file and prefix:
        raise UsageError("give the new values in a file or in the environment, not both",
                         hint="--new-values FILE, or --from-env-prefix PREFIX")  # fmt: skip
    if values_file:
        return read_values_file(values_file), values_file
    prefix = prefix or NEW_PREFIX
    return from_environment(prefix, environ), f"the environment ({prefix}NAME)"


def chosen_new(
    credentials: list[Credential], values: dict[str, bytes], named: bool, source: str,
    from_file: bool,
) -> list[tuple[Credential, bytes]]:  # fmt: skip
    """Each credential with its new value: every one ``named`` must have one; else those
    that have one. A name in the file the plan does not use is refused: a typo must not
    pass for a rotation (the environment has other NEW_ variables of its own)."""
    known = {name_of(c): c for c in credentials}
    unknown = sorted(set(values) - set(known)) if from_file and not named else []
    if unknown:
        raise UsageError(f"{source} gives {', '.join(unknown)}, which the plan does not use",
                         hint=f"the plan's names: {', '.join(known)}")  # fmt: skip
    if named:
        missing = [c.reference for c in credentials if name_of(c) not in values]
        if missing:
            raise UsageError(f"no new value for {', '.join(missing)} in {source}",
                             hint="NAME=value in --new-values FILE, or NEW_NAME in the"
                             " environment")  # fmt: skip
    chosen = [(c, values[name_of(c)]) for c in credentials if name_of(c) in values]
    if not chosen:
        raise UsageError(f"no new value in {source} for any secret of the plan",
                         hint="NAME=value lines in --new-values FILE, or NEW_NAME variables;"
                         " `drplan secrets list` names them")  # fmt: skip
    return chosen


def old_candidates(
    credential: Credential, values_file: dict[str, bytes], environ: Mapping[str, str]
) -> list[bytes]:
    """Where an old value may be, in order: ``--old-values``, ``OLD_NAME``, and the value
    the plan reads here (an environment not yet changed to the new one). The caller takes
    the one whose fingerprint the timeline recorded as the old: none is trusted by name."""
    name = name_of(credential)
    found = [values_file.get(name), from_environment(OLD_PREFIX, environ).get(name)]
    found.append(read_value(credential)[0])
    return [value for value in found if value]
