"""A small plan that passes ``plan validate`` and ``plan lint`` with no finding at all."""

from __future__ import annotations

import datetime as dt
from typing import Any


def clean_plan() -> dict[str, Any]:
    """A fresh copy each call: two systems, a local and an S3 location, one drill."""
    today = dt.datetime.now(dt.UTC).date()
    return {
        "version": 1,
        "name": "Test Platform",
        "objectives": {
            "rto": {
                "critical": "4h",
                "important": "8h",
                "non_critical": "12h",
                "full_platform": "12h",
            },
            "rpo": {"database": "15m", "configuration": "4h"},
        },
        "data_classes": {
            "database": {"retention": {"full": "30d"}, "locations": ["local", "cloud"]},
        },
        "systems": {
            "db": {
                "kind": "postgres",
                "tier": "critical",
                "data_classes": ["database"],
                "connection": "host=127.0.0.1 port=5432 user=drplan",
                "password": "${TEST_DB_PASSWORD}",
            },
            "web": {
                "kind": "files",
                "tier": "important",
                "data_classes": ["configuration"],
                "paths": ["/etc/web"],
                "depends_on": ["db"],
            },
        },
        "locations": {
            "local": {"role": "primary", "kind": "local", "path": "/var/backups/drplan"},
            "cloud": {
                "role": "cloud",
                "kind": "s3",
                "bucket": "dr-test",
                "immutability": {"days": 30},
            },
        },
        "jobs": {
            "db-full": {
                "system": "db",
                "type": "full",
                "schedule": "0 1 * * *",
                "retention": {"keep_within": "30d"},
                "locations": ["local", "cloud"],
            },
            "db-wal": {
                "system": "db",
                "type": "wal",
                "schedule": "continuous",
                "archive_timeout": "1m",  # what bounds the loss of archive_command's WAL
                "locations": ["local", "cloud"],
            },
            "web": {
                "system": "web",
                "type": "files",
                "schedule": "1h",
                "retention": {"keep_within": "30d"},
                "locations": ["local", "cloud"],
            },
        },
        "roles": {"ic": {"title": "Incident Commander", "holder": "CTO", "phone": "+1-555-0001"}},
        "runbooks": {
            "rb": {
                "phases": [
                    {
                        "name": "Respond",
                        "window": "0-1h",
                        "steps": [{"title": "Assess", "owner": "ic"}],
                    },
                    {
                        "name": "Recover",
                        "window": "1-4h",
                        "steps": [{"title": "Restore db", "owner": "ic", "recovers": ["db"]}],
                    },
                ]
            }
        },
        "scenarios": {"db-loss": {"title": "Database loss", "tier": 1, "runbook": "rb"}},
        "drills": {"quarterly": {"kind": "full_platform", "schedule": "0 3 1 1,4,7,10 *"}},
        "review": {
            "version": "1",
            "last_updated": str(today - dt.timedelta(days=10)),
            "next_review": str(today + dt.timedelta(days=80)),
            "every": "3mo",
            "approved_by": "CTO",
        },
    }


def local_only(plan: dict[str, Any]) -> dict[str, Any]:
    """``plan`` (a clean plan's dict) without its S3 location, which nothing on loopback
    reaches: every job and data class in the local location only."""
    del plan["locations"]["cloud"]
    plan["data_classes"]["database"]["locations"] = ["local"]
    for job in plan["jobs"].values():
        job["locations"] = ["local"]
    return plan
