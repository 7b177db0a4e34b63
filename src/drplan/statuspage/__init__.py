"""The public status page: what it says (``state``) and how it is written for people and
for the widgets and monitors that read Atlassian Statuspage's JSON (``formats``)."""
