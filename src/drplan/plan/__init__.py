"""The plan as code: the schema, loading YAML with positions, cross-references, lint, and views.

Terms:

plan file
    One YAML document; see docs/plan-reference.md for every key.
problem
    Something that makes a plan invalid (syntax, schema, an unknown name): reported
    as ``FILE:LINE:COLUMN: key.path: message`` and exit code 4.
finding
    Something lint reports about a valid plan that cannot meet its own objectives,
    with a rule id, a severity and a hint.
"""
