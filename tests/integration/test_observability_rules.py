"""The alert rules drplan writes from the plan pass `promtool check rules`, and fire
when they should under `promtool test rules`; the dashboard and the rules use only
metrics the daemon exports, all of them documented."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import Result

Run = Callable[..., Result]
ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "examples" / "smartwatts" / "plan.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # promtool comes from Debian's prometheus package (.ci/run installs it).
    return subprocess.run(
        ["promtool", *args], check=False, capture_output=True, text=True, timeout=120
    )


def test_the_rules_pass_promtool_and_fire_when_jobs_are_late_or_rpo_breached(
    run: Run, tmp_path: Path
) -> None:
    rules = tmp_path / "drplan-rules.yml"
    written = run("--plan", str(PLAN), "observability", "rules", "-o", str(rules))
    assert written.code == 0, written.err
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = yaml.safe_load(rules.read_text())["groups"]
    by_job = {
        r["labels"].get("job"): r
        for g in groups
        for r in g["rules"]
        if r["alert"] == "DrplanJobLate"
    }
    late = by_job["db-incremental"]  # every 15 minutes: late after 20 (5 minutes' grace)
    assert late["expr"].endswith("> 1200")

    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # db-incremental last succeeded at time 0 and never again
                {"series": 'drplan_job_last_success_timestamp_seconds{job="db-incremental"}',
                 "values": "0x60"},
                {"series": 'drplan_rpo_status{data_class="database",location="primary",status="breached"}',
                 "values": "0 0 1x10"},
                {"series": "drplan_rpo_assessed_timestamp_seconds", "values": "0+60x60"},
                # an incident whose phase 1 runs over at minute 2, and its database's
                # deadline passing at minute 3; a rehearsal open beside it
                {"series": 'drplan_incidents_open{scenario="database-corruption",tier="1",rehearsal="false"}',
                 "values": "1x10"},
                {"series": 'drplan_incidents_open{scenario="database-corruption",tier="1",rehearsal="true"}',
                 "values": "1x10"},
                {"series": 'drplan_incident_phases_overrun{incident="INC-7K3Q",scenario="database-corruption"}',
                 "values": "0 0 1x8"},
                {"series": 'drplan_incident_rto_remaining_seconds{incident="INC-7K3Q",system="smartwatts-db",scenario="database-corruption"}',
                 "values": "150-60x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "DrplanJobLate", "exp_alerts": []},
                {"eval_time": "25m", "alertname": "DrplanJobLate", "exp_alerts": [{
                    "exp_labels": {"severity": "error", "job": "db-incremental"},
                    "exp_annotations": {"summary": late["annotations"]["summary"]},
                }]},
                {"eval_time": "1m", "alertname": "DrplanRpoBreached", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "DrplanRpoBreached", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "data_class": "database",
                                   "location": "primary", "status": "breached"},
                    "exp_annotations": {"summary": "RPO breached: database in primary"},
                }]},
                {"eval_time": "30m", "alertname": "DrplanDaemonDown", "exp_alerts": []},
                {"eval_time": "1m", "alertname": "DrplanIncidentOpen", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "scenario": "database-corruption",
                                   "tier": "1", "rehearsal": "false"},
                    "exp_annotations": {"summary": "1 incident(s) of database-corruption open (tier 1)"},
                }]},  # the rehearsal pages nobody
                {"eval_time": "1m", "alertname": "DrplanIncidentPhaseOverrun", "exp_alerts": []},
                {"eval_time": "2m", "alertname": "DrplanIncidentPhaseOverrun", "exp_alerts": [{
                    "exp_labels": {"severity": "error", "incident": "INC-7K3Q",
                                   "scenario": "database-corruption"},
                    "exp_annotations": {"summary": "incident INC-7K3Q: 1 phase(s) past their window"},
                }]},
                {"eval_time": "2m", "alertname": "DrplanIncidentRtoMissed", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "DrplanIncidentRtoMissed", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "incident": "INC-7K3Q",
                                   "system": "smartwatts-db", "scenario": "database-corruption"},
                    "exp_annotations": {"summary": "incident INC-7K3Q: smartwatts-db is past its RTO deadline"},
                }]},
            ],
        }],
    }  # fmt: skip
    unit = tmp_path / "drplan-rules-test.yml"
    unit.write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = promtool("test", "rules", str(unit))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboard_and_rules_use_only_documented_metrics_the_daemon_exports(
    run: Run, tmp_path: Path
) -> None:
    source = (ROOT / "src" / "drplan" / "observability" / "metrics.py").read_text()
    exported = set(re.findall(r'"(drplan_[a-z_]+)"', source))
    counters = set(re.findall(r'CounterMetricFamily\(\s*"(drplan_[a-z_]+)"', source))
    names = (exported - counters) | {f"{c}_total" for c in counters}
    documented = set(re.findall(r"^\| `(drplan_[a-z_]+)` \|", (ROOT / "docs" / "metrics.md")
                                .read_text(), re.MULTILINE))  # fmt: skip
    assert documented == names
    board = run("--plan", str(PLAN), "observability", "dashboard")
    assert board.code == 0, board.err
    exprs = [t["expr"] for p in json.loads(board.out)["panels"] for t in p["targets"]]
    rules = run("--plan", str(PLAN), "observability", "rules").out
    used = set(re.findall(r"drplan_[a-z_]+", " ".join(exprs) + rules))
    assert used <= names, used - names
