"""Incidents: the plan's response half, run for real.

A declared incident is a timeline of events (``timeline``), journaled locally first
(``journal``) and copied to the catalog (``service``); its state is those events folded
(``state``), with the runbook and objectives frozen at declaration (``declare``), the
RTO clock and the predictions from past drills (``predict``), shown by ``view``.
"""
