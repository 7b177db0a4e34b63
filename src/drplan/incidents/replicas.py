"""The timeline copied into the plan's off-site locations, so that a responder at the
recovery site can take the incident over when the site it was declared at is gone
(`drplan incident resume INC --from LOCATION`).

Each copy is the whole timeline up to an entry, stored as an encrypted object of the
location's repository, ``incidents/INC/NNNNNNNN`` (N: its number of entries), never
overwritten: a location under Object Lock takes it, and an older copy stays readable
if a newer one is damaged. A copy is written at the declaration, at each phase
settled, at each clock stopped, and at the resolution and the closing.
"""

from __future__ import annotations

from drplan.errors import IntegrityError
from drplan.repo.objects import open_object, seal_object
from drplan.repo.repository import Repository
from drplan.storage import NotFound

PREFIX = "incidents/"
KIND = "incident"
LEVEL = 3


def store(repo: Repository, incident: str, body: bytes, entries: int) -> bool:
    """Store the timeline (``entries`` long); False when that copy is there already."""
    name = f"{PREFIX}{incident}/{entries:08d}"
    if any(i.name == name for i in repo.storage.list(f"{PREFIX}{incident}/")):
        return False
    repo.storage.write(name, seal_object(repo.key, repo.cipher, KIND, body, LEVEL))
    return True


def newest(repo: Repository, incident: str) -> bytes | None:
    """The longest copy of the timeline the location holds that opens (None: none)."""
    names = sorted((i.name for i in repo.storage.list(f"{PREFIX}{incident}/")), reverse=True)
    damaged = []
    for name in names:
        try:
            return open_object(repo.key, repo.cipher, KIND, repo.storage.read(name), name)
        except (IntegrityError, NotFound):
            damaged.append(name)
    if damaged:
        raise IntegrityError(f"every copy of {incident}'s timeline in {repo.storage.url} is"
                             f" damaged: {', '.join(damaged)}")  # fmt: skip
    return None


def held(repo: Repository) -> list[str]:
    """The incidents the location holds a timeline of."""
    return sorted({i.name[len(PREFIX) :].split("/", 1)[0] for i in repo.storage.list(PREFIX)})
