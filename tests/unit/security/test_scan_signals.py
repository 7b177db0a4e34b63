"""The signals `drplan scan` judges by: entropy, ransomware names, renames, z-scores
against short and flat histories, the verdict rules, and which snapshot is the last
clean point."""

from __future__ import annotations

import gzip
import random
from datetime import UTC, datetime, timedelta

import pytest

from drplan.repo.snapshot import Snapshot
from drplan.security.scan import Judgement, last_clean_point
from drplan.security.scan_signals import (
    RULE,
    Judged,
    clearly_lower,
    entropy,
    extension,
    judge_signal,
    looks_encrypted,
    ransom_extension,
    ransom_note,
    renamed_from,
    verdict_of,
    zscore,
)

RNG = random.Random(1)


def test_entropy_of_known_distributions() -> None:
    assert entropy(b"") == 0.0
    assert entropy(b"a" * 1000) == 0.0
    assert entropy(bytes(range(256)) * 4) == pytest.approx(8.0)
    assert entropy(b"ab" * 500) == pytest.approx(1.0)


def test_ciphertext_and_compression_look_encrypted_text_does_not() -> None:
    text = b"the quarterly report, net of tax, for the customer " * 400
    random_bytes = RNG.randbytes(64 * 1024)
    assert not looks_encrypted(entropy(text), len(text))
    assert looks_encrypted(entropy(random_bytes), len(random_bytes))
    packed = gzip.compress(RNG.randbytes(20_000))
    assert looks_encrypted(entropy(packed), len(packed))  # why compressed files are excluded
    # A short sample of random bytes measures lower; its threshold follows.
    short = RNG.randbytes(1024)
    assert entropy(short) < 7.9
    assert looks_encrypted(entropy(short), 1024)
    # Too small to tell: never judged.
    tiny = RNG.randbytes(300)
    assert not looks_encrypted(entropy(tiny), 300)


def test_clearly_lower_separates_text_from_an_already_compressed_file() -> None:
    assert clearly_lower(4.5, 64 * 1024)
    assert not clearly_lower(7.95, 64 * 1024)  # a .gz rewritten: stays high, not counted


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.docx.locked", True),
        ("/srv/data/Q3.XLSX.LockBit", True),
        ("photo.jpg.ryk", True),
        ("db.sql.enc", True),
        ("yarn.lock", False),  # lock files are everywhere
        ("report.docx", False),
        (".locked", False),  # a hidden file's name, not an extension
        ("locked", False),
    ],
)
def test_ransom_extensions(name: str, expected: bool) -> None:
    assert ransom_extension(name) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("README_TO_DECRYPT.txt", True),
        ("/home/a/docs/readme_to_decrypt.TXT", True),
        ("HOW_TO_RECOVER_FILES.txt", True),
        ("!!!READ_ME!!!.txt", True),
        ("DECRYPT_INSTRUCTIONS.html", True),
        ("KRAB-DECRYPT.txt", True),
        ("README.md", False),
        ("how_to_deploy.md", False),
        ("decryption.py", False),
    ],
)
def test_ransom_note_names(name: str, expected: bool) -> None:
    assert ransom_note(name) is expected


def test_extension_is_the_last_one_lowercased() -> None:
    assert extension("/a/b/Report.Tar.GZ") == "gz"
    assert extension("/a/b.d/Makefile") == ""
    assert extension(".bashrc") == ""


def test_a_rename_is_a_deleted_name_plus_new_extensions() -> None:
    deleted = {"/d/report.docx", "/d/a.txt"}
    assert renamed_from("/d/report.docx.locked", deleted) == "/d/report.docx"
    assert renamed_from("/d/a.txt.id-42.[x@y.z].crypt", deleted) == "/d/a.txt"
    assert renamed_from("/e/report.docx.locked", deleted) is None  # another directory
    assert renamed_from("/d/report.docx", deleted) is None  # the same name is no rename
    assert renamed_from("/d/report.pdf", deleted) is None


def test_zscore_needs_three_earlier_values() -> None:
    assert zscore(0.5, [], 0.02) is None
    assert zscore(0.5, [0.1, 0.1], 0.02) is None
    assert zscore(0.5, [0.1, 0.1, 0.1], 0.02) == pytest.approx(20.0)


def test_zscore_on_a_flat_history_divides_by_the_spread_floor() -> None:
    # Every file rewritten every time: the same value again is nothing unusual...
    assert zscore(1.0, [1.0] * 5, 0.02) == 0.0
    # ... and a one-file wobble on a flat history is not extreme either.
    assert zscore(0.01, [0.0] * 5, 0.02) == pytest.approx(0.5)


def test_zscore_on_a_noisy_history() -> None:
    history = [0.1, 0.3, 0.1, 0.3]  # mean 0.2, deviation 0.1
    assert zscore(0.5, history, 0.02) == pytest.approx(3.0)


def test_a_signal_without_history_is_held_against_its_absolute_threshold() -> None:
    encrypted = RULE["encrypted"]
    assert judge_signal(encrypted, 0.15, 30, [], []).out_of_line
    assert not judge_signal(encrypted, 0.05, 10, [], []).out_of_line
    # Rewriting alone never counts without history (busy directories do it every time).
    assert not judge_signal(RULE["rewritten"], 1.0, 200, [], []).out_of_line
    # With history, the z-score decides, above the floor.
    assert judge_signal(RULE["rewritten"], 0.6, 120, [0.01, 0.02, 0.01], []).out_of_line
    assert not judge_signal(RULE["rewritten"], 0.05, 10, [0.0, 0.0, 0.0], []).out_of_line


def _signals(**values: tuple[float, float | None]) -> dict[str, Judged]:
    """Signals as judge_signal makes them: name=(value, history mean) with a flat history."""
    out = {}
    for name, rule in RULE.items():
        value, mean = values.get(name, (0.0, 0.0))
        history = [] if mean is None else [mean] * 3
        out[name] = judge_signal(rule, value, int(value * 100), history, [])
    return out


def test_verdicts() -> None:
    assert verdict_of(_signals())[0] == "clean"
    # A large share now encrypted, far outside history: compromised.
    assert verdict_of(_signals(encrypted=(0.4, 0.0)))[0] == "compromised"
    # A ransom note beside encrypted-looking renames, even a small share of them.
    assert verdict_of(_signals(encrypted=(0.08, 0.0), notes=(1, 0.0)))[0] == "compromised"
    # One signal alone out of line: suspicious.
    verdict, reasons = verdict_of(_signals(deleted=(0.5, 0.0)))
    assert verdict == "suspicious"
    assert reasons[0].startswith("deleted 50% out of line")
    assert verdict_of(_signals(notes=(1, 0.0)))[0] == "suspicious"
    assert verdict_of(_signals(encrypted=(0.1, 0.0)))[0] == "suspicious"  # under 20%
    # What the system does every time is not out of line.
    assert verdict_of(_signals(rewritten=(1.0, 1.0), encrypted=(0.3, 0.3)))[0] == "clean"


def _judgements(*verdicts: str) -> list[Judgement]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        Judgement(
            Snapshot(start + timedelta(days=i), b"\0" * 32, ["/d"], "h", "u", id=f"{i:02d}" * 32),
            v,  # type: ignore[arg-type]
        )
        for i, v in enumerate(verdicts)
    ]


def test_the_last_clean_point_is_before_the_latest_compromise_began() -> None:
    point = last_clean_point(_judgements("clean", "clean", "suspicious", "compromised", "clean"))
    assert point.judgement is not None
    assert point.judgement.snapshot.id.startswith("01")
    assert "before 02020202" in point.why  # the suspicious run leading into it counts


def test_the_last_clean_point_skips_unknown_and_is_the_newest_when_all_is_well() -> None:
    point = last_clean_point(_judgements("clean", "unknown", "clean"))
    assert point.judgement is not None
    assert point.judgement.snapshot.id.startswith("02")
    trailing = last_clean_point(_judgements("clean", "clean", "suspicious"))
    assert trailing.judgement is not None
    assert trailing.judgement.snapshot.id.startswith("01")
    assert last_clean_point(_judgements("compromised", "compromised")).judgement is None
