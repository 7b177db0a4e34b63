"""Container images, backed up from an OCI/Docker registry and pushed back to one.

Terms, as the OCI distribution and image specs use them:

registry
    A server speaking the Registry HTTP API v2 (``https://registry.example.com``).
repository
    A named collection of images in a registry (``smartwatts/api``).
reference
    What names one image in a repository: a tag (``v1``, movable) or a digest (fixed).
manifest
    A JSON document naming one image's config blob and its layers, each by digest.
index
    A manifest of manifests (OCI image index, Docker manifest list): one image for
    several platforms; its children are manifests.
blob
    Content stored by digest: a layer, a config, or a manifest itself.
digest
    ``sha256:<hex>``, the SHA-256 of a blob's exact bytes; the only name content has,
    and the check that what arrived is what was named.

``registry`` is the client (it moves bytes and checks digests); ``backup`` decides what
to fetch and stores it in a snapshot as an OCI image layout; ``drplan.recovery.images``
pushes a snapshot's images back.
"""
