"""A real container registry on loopback: Debian's ``docker-registry`` (distribution
2.8), and small random OCI images pushed into it without docker.

``running_registry(directory)`` starts one and stops it on exit; :class:`Registry` says
how to reach it, gives a client, and counts the requests it served (its access log).

The registry is hermetic: it listens on 127.0.0.1 on a port picked free, stores in
``directory``, reads only the configuration written here (``REGISTRY_*`` variables,
which would override it, are not passed on), and sends notifications only when asked
(``notify_url``). With ``htpasswd`` it asks for HTTP basic credentials, checked
against a bcrypt file.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gzip
import hashlib
import io
import json
import os
import random
import re
import secrets
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drplan.sources.images.manifest import OCI_INDEX, OCI_MANIFEST, Manifest, sha256_of
from drplan.sources.images.registry import RegistryClient
from testbed import Unavailable, free_port, stop

BINARY = "/usr/bin/docker-registry"
START_TIMEOUT = 30.0  # seconds for /v2/ to answer
START_TRIES = 3  # a port picked free can be taken before the registry binds it
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCESS_LINE = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


@dataclass(frozen=True)
class Registry:
    """How to reach a running registry, and where it keeps things."""

    url: str
    host: str
    storage: Path
    log: Path
    credentials: tuple[str, str] | None = None

    def client(self, *, anonymous: bool = False) -> RegistryClient:
        user, password = (None, None) if anonymous or not self.credentials else self.credentials
        return RegistryClient(self.url, username=user, password=password)

    def requests(self) -> list[tuple[str, str, int]]:
        """Every request served so far: (method, path, status), from the access log."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [(m, p, int(s)) for m, p, s in ACCESS_LINE.findall(text)]

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (for tampering in tests)."""
        hex_digest = digest.removeprefix("sha256:")
        return (
            self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
        )


@contextlib.contextmanager
def running_registry(
    directory: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    notify_url: str | None = None,
    notify_headers: dict[str, str] | None = None,
) -> Iterator[Registry]:
    """Start a registry storing in ``directory``; stop it on exit."""
    if not os.access(BINARY, os.X_OK):
        raise Unavailable(
            f"the registry binary {BINARY} is missing: apt-get install docker-registry"
        )
    problems: list[str] = []
    for attempt in range(START_TRIES):
        run = directory / f"run{attempt}"
        run.mkdir(parents=True)
        port = free_port()
        config = _config(run, port, htpasswd, notify_url, notify_headers)
        log = run / "registry.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env["HOME"] = env["TMPDIR"] = str(run)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [BINARY, "serve", str(config)], cwd=run, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=out,
            )  # fmt: skip
        registry = Registry(
            f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", run / "data", log, htpasswd
        )
        try:
            _wait_until_ready(process, registry)
        except _StartFailed as exc:
            stop(process)
            problems.append(str(exc))
            continue
        try:
            yield registry
        finally:
            stop(process)
        return
    raise Unavailable("docker-registry did not start:\n" + "\n".join(problems))


def _config(
    run: Path,
    port: int,
    htpasswd: tuple[str, str] | None,
    notify_url: str | None,
    notify_headers: dict[str, str] | None,
) -> Path:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(run / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if htpasswd is not None:
        path = run / "htpasswd"
        path.write_text(f"{htpasswd[0]}:{_bcrypt(htpasswd[1])}\n", encoding="utf-8")
        path.chmod(0o600)
        config["auth"] = {"htpasswd": {"realm": "drplan-test", "path": str(path)}}
    if notify_url is not None:
        config["notifications"] = {
            "endpoints": [
                {
                    "name": "drplan",
                    "url": notify_url,
                    # distribution takes http.Header: each value a list
                    "headers": {k: [v] for k, v in (notify_headers or {}).items()},
                    "timeout": "2s",
                    "threshold": 5,
                    "backoff": "1s",
                }
            ]
        }
    path = run / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(0o600)  # it holds the notification headers (a webhook token)
    return path


def _bcrypt(password: str) -> str:
    """A bcrypt hash (all distribution's htpasswd accepts): the ``bcrypt`` module if
    installed, else the system's libcrypt (libxcrypt has bcrypt), else Unavailable."""
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode())
    except ImportError:
        pass
    name = ctypes.util.find_library("crypt")
    if name is None:
        raise Unavailable("bcrypt is needed for an htpasswd file: pip install bcrypt")
    lib = ctypes.CDLL(name)
    lib.crypt_gensalt.restype = lib.crypt.restype = ctypes.c_char_p
    salt = lib.crypt_gensalt(b"$2b$", 5, os.urandom(16), 16)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise Unavailable("the system's libcrypt has no bcrypt: pip install bcrypt")
    return str(hashed.decode())


class _StartFailed(Exception):
    pass


def _wait_until_ready(process: subprocess.Popen[bytes], registry: Registry) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _StartFailed(
                f"docker-registry exited with {process.returncode}: {_tail(registry)}"
            )
        try:
            with urllib.request.urlopen(registry.url + "/v2/", timeout=1.0):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, and asking for credentials
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise _StartFailed(f"no answer on /v2/ within {START_TIMEOUT:.0f}s: {_tail(registry)}")


def _tail(registry: Registry) -> str:
    lines = registry.log.read_text(encoding="utf-8", errors="replace").splitlines()
    return f"(log {registry.log})\n" + "\n".join(lines[-15:])


# -- test images --------------------------------------------------------------------------


@dataclass(frozen=True)
class PushedImage:
    """An image pushed by :func:`push_image`: its manifest and its blobs' digests."""

    name: str
    tag: str
    manifest: Manifest
    config: str
    layers: list[str]


def random_layer(size: int, seed: int) -> bytes:
    """A gzip'd tar of one file of ``size`` random bytes (incompressible, as binaries are
    nearly): ``seed`` makes it reproducible, and distinct seeds give distinct layers."""
    data = random.Random(seed).randbytes(size)
    out = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        info = tarfile.TarInfo(f"layer-{seed}.bin")
        info.size, info.mtime = size, 0
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def push_image(
    client: RegistryClient,
    name: str,
    tag: str | None,
    layers: list[bytes],
    *,
    platform: tuple[str, str] = ("linux", "amd64"),
) -> PushedImage:
    """Push an OCI image of these layers (and a config naming them) under ``tag``."""
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest() for layer in layers]
    config = json.dumps({
        "architecture": platform[1], "os": platform[0], "created": "2026-01-01T00:00:00Z",
        "config": {"Labels": {"nonce": secrets.token_hex(8)}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()  # fmt: skip
    descriptors: list[dict[str, Any]] = []
    for blob, media_type in [(config, OCI_CONFIG), *((layer, OCI_LAYER) for layer in layers)]:
        digest = sha256_of(blob)
        if client.blob_size(name, digest) is None:
            client.push_blob(name, digest, len(blob), [blob])
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
    raw = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptors[0],
        "layers": descriptors[1:],
    }).encode()  # fmt: skip
    manifest = Manifest(OCI_MANIFEST, raw, sha256_of(raw))
    client.put_manifest(name, tag or manifest.digest, manifest)
    layer_digests = [d["digest"] for d in descriptors[1:]]
    return PushedImage(name, tag or "", manifest, descriptors[0]["digest"], layer_digests)


def push_index(
    client: RegistryClient, name: str, tag: str, seed: int
) -> tuple[Manifest, list[PushedImage]]:
    """A multi-arch image: two platform images (linux/amd64, linux/arm64) under one index."""
    children = [
        push_image(client, name, None, [random_layer(20_000, seed + i)], platform=("linux", arch))
        for i, arch in enumerate(("amd64", "arm64"))
    ]
    raw = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": c.manifest.digest, "size": len(c.manifest.raw),
             "platform": {"architecture": arch, "os": "linux"}}
            for c, arch in zip(children, ("amd64", "arm64"), strict=True)
        ],
    }).encode()  # fmt: skip
    index = Manifest(OCI_INDEX, raw, sha256_of(raw))
    client.put_manifest(name, tag, index)
    return index, children
