"""File backups: walk paths, record full metadata, store contents deduplicated, write a snapshot."""

from drplan.sources.files.archiver import BackupOptions, BackupResult, backup_files

__all__ = ["BackupOptions", "BackupResult", "backup_files"]
