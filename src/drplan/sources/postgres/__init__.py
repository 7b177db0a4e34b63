"""PostgreSQL as a source: finding its tools, checking a cluster is ready, base backups and WAL."""
