"""The ``drplan`` program's entry point: WAL calls from PostgreSQL take a quick path.

``archive_command`` and ``restore_command`` run drplan once per WAL file; they must
not pay for importing the command line (click, the plan schema, the repository), so
a plain ``wal push``/``wal fetch`` goes to ``sources.postgres.wal_spool`` first and
everything else to ``cli.main``.
"""

from __future__ import annotations

import sys


def main() -> None:
    from drplan.sources.postgres import wal_spool  # noqa: PLC0415 - standard library only

    call = wal_spool.parse(sys.argv[1:])
    if call is not None:
        sys.exit(wal_spool.run(call))
    from drplan.cli import main as cli_main  # noqa: PLC0415

    sys.exit(cli_main())
