"""The repository: deduplicated, compressed, encrypted, verifiable storage of snapshots.

Terms (docs/repository-format.md is the specification):

blob
    A piece of plaintext, a file chunk (data) or a directory listing (tree), named by
    its keyed BLAKE3 id.
pack
    One stored object holding many encrypted blobs, described by a header at its end.
index
    Which blob is in which pack, at which offset.
snapshot
    One backup: a root tree plus time, host, paths, tags and a summary.
master key
    The secret that opens everything; wrapped by each key file's password.
"""
