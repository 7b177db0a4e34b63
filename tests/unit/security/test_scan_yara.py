"""`drplan scan --yara`: rule files that do not compile are the command line's fault, a
match's verdict (a rule may say it only makes a snapshot suspicious), and how a content
check's verdict joins the heuristics' (only ever worse). Matching over a repository is
in tests/integration/test_scan_scanners.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from drplan.errors import UsageError
from drplan.repo.snapshot import Snapshot
from drplan.security.scan import Judgement
from drplan.security.scan_signals import Verdict
from drplan.security.scan_yara import Match, YaraResult, compile_rules

RULE = """
rule ransom_note : ransomware {
    strings: $pay = "send 2 BTC to" nocase
    condition: $pay
}
rule packed_binary {
    meta: verdict = "suspicious"
    strings: $upx = "UPX!"
    condition: $upx and filename matches /\\.exe$/
}
"""


def test_rules_compile_with_the_file_names_they_may_test(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yar"
    rules.write_text(RULE)
    compiled = compile_rules(str(rules))
    found = compiled.match(
        data=b"xx UPX! xx",
        externals={"filename": "setup.exe", "filepath": "/srv/setup.exe", "extension": "exe"},
    )
    assert [m.rule for m in found] == ["packed_binary"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("rule broken { condition: no_such_identifier }", "undefined identifier"),
        (None, "cannot be read"),
    ],
)
def test_a_rule_file_that_does_not_compile_is_exit_2(
    tmp_path: Path, text: str | None, said: str
) -> None:
    rules = tmp_path / "rules.yar"
    if text is not None:
        rules.write_text(text)
    with pytest.raises(UsageError, match=said) as refused:
        compile_rules(str(rules))
    assert refused.value.exit_code == 2
    assert str(rules) in refused.value.message


def test_a_match_compromises_unless_every_rule_says_suspicious() -> None:
    note = Match("/srv/README.txt", ("ransom_note",), False, "1a2b3c4d")
    packed = Match("/srv/setup.exe", ("packed_binary",), True, "1a2b3c4d")
    assert YaraResult().verdict == "clean"
    assert YaraResult(matches=[packed]).verdict == "suspicious"
    assert YaraResult(matches=[packed], carried=[note]).verdict == "compromised"
    both = YaraResult(matches=[note, packed], carried=[note])
    assert both.reasons() == [
        "YARA rule(s) packed_binary, ransom_note matched 2 file(s), e.g. /srv/README.txt",
        "still holds 1 file(s) YARA matched earlier, e.g. /srv/README.txt (ransom_note,"
        " in 1a2b3c4d)",
    ]


def judgement(verdict: Verdict, reasons: list[str]) -> Judgement:
    snapshot = Snapshot(datetime(2026, 12, 1, tzinfo=UTC), b"\0" * 32, ["/srv"], "host", "root")
    return Judgement(snapshot, verdict, reasons)


def test_a_content_check_only_ever_makes_a_verdict_worse() -> None:
    clean = judgement("clean", [])
    clean.worsen("compromised", ["the scanner found something"])
    assert (clean.verdict, clean.reasons) == ("compromised", ["the scanner found something"])

    bad = judgement("compromised", ["40% of the files now look encrypted"])
    bad.worsen("suspicious", ["YARA rule(s) packed_binary matched 1 file(s)"])
    assert bad.verdict == "compromised"
    assert bad.reasons == [
        "40% of the files now look encrypted", "YARA rule(s) packed_binary matched 1 file(s)"
    ]  # fmt: skip

    odd = judgement("suspicious", ["deleted 40% out of line"])
    odd.worsen("clean", [])
    assert (odd.verdict, odd.reasons) == ("suspicious", ["deleted 40% out of line"])
