"""Drills: recoveries rehearsed into scratch targets, measured against the plan (docs/drills.md)."""
