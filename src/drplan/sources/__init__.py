"""Sources: what drplan backs up. ``files`` (directories and files), later ``postgres`` and ``command``.

A source reads a system and writes blobs, trees and finally a snapshot into a
repository; it never decides where or how long data is kept (that is the plan's).
"""
