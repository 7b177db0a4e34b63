"""drplan: a disaster recovery plan as code, carried out and proven.

Terms used throughout:

plan
    One YAML file naming the systems, their tiers and objectives (RTO, RPO), what
    is backed up, how often and where to, how recovery is tested, who is told.
system
    Something to recover: a PostgreSQL cluster, a set of files, a command's output.
data class
    A kind of data with its own RPO (database, configuration, ...).
location
    A place backups are kept (primary, secondary, cloud, archive).
"""

__version__ = "0.1.0"
