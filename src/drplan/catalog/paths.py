"""Where drplan keeps its state and its catalog by default: light enough for commands
that only need the path (the catalog itself needs SQLAlchemy, slow to import)."""

from __future__ import annotations

import os

CATALOG_ENV = "DRPLAN_CATALOG"
STATE_DIR_ENV = "DRPLAN_STATE_DIR"


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


def state_dir() -> str:
    """Where the daemon keeps its state: ``$DRPLAN_STATE_DIR``, else the XDG state
    directory (``~/.local/state/drplan``)."""
    if os.environ.get(STATE_DIR_ENV):
        return os.environ[STATE_DIR_ENV]
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "drplan")


def default_url() -> str:
    """``$DRPLAN_CATALOG``, else SQLite in the state directory."""
    return os.environ.get(CATALOG_ENV) or sqlite_url(os.path.join(state_dir(), "catalog.db"))
