"""YARA rules matched over what each snapshot of a files system brought, for `drplan scan
--yara RULES` (docs/security.md, "Scanners and YARA").

Content is read through the repository, nothing is restored: per snapshot, every file
new or rewritten since the snapshot before it that could be read (every file of the
first), read whole up to ``MAX_FILE_BYTES``, every chunk authenticated as a restore
would. So each version of a file is matched once, in the snapshot it appeared in. A
matched file is then followed into the later snapshots: while one holds the same path
with the same content, it still holds the match, and is judged so without reading it
again.

A match makes the snapshot ``compromised``, or only ``suspicious`` when the rule says
``meta: verdict = "suspicious"`` (rules that also hit on legitimate files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drplan.errors import UsageError
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.security.scan_changes import ContentReader
from drplan.security.scan_signals import Verdict, extension

# Past this a file is matched on its first MAX_FILE_BYTES (counted as `truncated`): the
# matcher needs the content in memory, and malware and ransom notes are small.
MAX_FILE_BYTES = 64 * 1024 * 1024
MATCH_SECONDS = 60  # per file: a pathological rule must not stall the scan
MATCHES_KEPT = 20  # per snapshot, as evidence (and a count)
# What rules may test besides the content, e.g. `filename matches /README/`.
EXTERNALS = {"filename": "", "filepath": "", "extension": ""}


@dataclass(frozen=True)
class Match:
    path: str
    rules: tuple[str, ...]  # NAMESPACE:RULE for rules of a namespace other than the default
    suspicious_only: bool  # every rule that matched says `verdict = "suspicious"`
    snapshot: str  # the short id of the snapshot the match was found in

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rules": list(self.rules), "found_in": self.snapshot,
                "suspicious_only": self.suspicious_only}  # fmt: skip


@dataclass
class YaraResult:
    """One snapshot matched: what was read, what matched in it, what it still holds."""

    files: int = 0
    bytes: int = 0
    truncated: int = 0  # files matched on their first MAX_FILE_BYTES only
    timed_out: list[str] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)  # found in this snapshot
    carried: list[Match] = field(default_factory=list)  # found earlier, still here unchanged

    @property
    def verdict(self) -> Verdict:
        found = self.matches + self.carried
        if not found:
            return "clean"
        return "suspicious" if all(m.suspicious_only for m in found) else "compromised"

    def reasons(self) -> list[str]:
        out = []
        if self.matches:
            rules = sorted({r for m in self.matches for r in m.rules})
            out.append(f"YARA rule(s) {', '.join(rules)} matched {len(self.matches)} file(s),"
                       f" e.g. {self.matches[0].path}")  # fmt: skip
        if self.carried:
            first = self.carried[0]
            out.append(f"still holds {len(self.carried)} file(s) YARA matched earlier, e.g."
                       f" {first.path} ({', '.join(first.rules)}, in {first.snapshot})")  # fmt: skip
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "bytes": self.bytes, "truncated": self.truncated,
            "timed_out": self.timed_out[:MATCHES_KEPT], "match_count": len(self.matches),
            "matches": [m.as_dict() for m in self.matches[:MATCHES_KEPT]],
            "carried_count": len(self.carried),
            "carried": [m.as_dict() for m in self.carried[:MATCHES_KEPT]],
        }  # fmt: skip


def compile_rules(path: str) -> Any:
    """The compiled rules of the file ``path``; a rule file that does not compile is the
    command line's fault (exit 2), with YARA's own words."""
    import yara  # noqa: PLC0415 - a native module, loaded only for --yara

    try:
        return yara.compile(filepath=path, externals=EXTERNALS)
    except yara.SyntaxError as exc:
        # YARA names the file and line itself: `rules.yar(3): undefined identifier "x"`.
        raise UsageError(f"--yara: {exc}", hint="fix the rule and run again") from None
    except yara.Error as exc:
        raise UsageError(f"--yara {path} cannot be read: {exc}",
                         hint="give --yara a YARA rule file") from None  # fmt: skip


class YaraMatcher:
    """Compiled rules, and the matched files followed from snapshot to snapshot."""

    def __init__(self, rules: Any) -> None:
        self.rules = rules
        self._present: dict[str, tuple[tuple[bytes, ...], Match]] = {}

    def judge(self, reader: ContentReader, snapshot: Snapshot, changed: dict[str, Node]
              ) -> YaraResult:  # fmt: skip
        """Match what ``snapshot`` brought (``changed``), and carry what matched before
        and is still there. A chunk that cannot be read raises the repository's error:
        the snapshot is then unknown, as for any read the scan makes."""
        result = YaraResult()
        # Kept only once the whole snapshot was read: an unknown one changes nothing.
        present = {p: held for p, held in self._present.items() if p not in changed}
        for path, (content, match) in list(present.items()):
            node = reader.node(snapshot.tree, path)
            if node is not None and node.type == "file" and tuple(node.content) == content:
                result.carried.append(match)
            else:
                del present[path]  # removed: followed no further
        for path in sorted(changed):
            node = changed[path]
            found = self._match(reader, path, node, snapshot, result)
            if found is not None:
                result.matches.append(found)
                present[path] = (tuple(node.content), found)
        self._present = present
        return result

    def _match(
        self, reader: ContentReader, path: str, node: Node, snapshot: Snapshot, result: YaraResult
    ) -> Match | None:
        import yara  # noqa: PLC0415

        data = bytearray()
        for blob in node.content:
            data += reader.repo.read_blob(blob)
            if len(data) >= MAX_FILE_BYTES:
                break
        if node.size > MAX_FILE_BYTES:
            result.truncated += 1
        del data[MAX_FILE_BYTES:]
        result.files += 1
        result.bytes += len(data)
        name = path.rsplit("/", 1)[-1]
        externals = {"filename": name, "filepath": path, "extension": extension(name)}
        try:
            found = self.rules.match(data=bytes(data), externals=externals, timeout=MATCH_SECONDS)
        except yara.TimeoutError:
            result.timed_out.append(path)
            return None
        if not found:
            return None
        rules = tuple(sorted(m.rule if m.namespace == "default" else f"{m.namespace}:{m.rule}"
                             for m in found))  # fmt: skip
        mild = all(str(m.meta.get("verdict", "")).lower() == "suspicious" for m in found)
        return Match(path, rules, mild, snapshot.short_id)
