"""A small client of the Registry HTTP API v2 (the OCI distribution spec): tags,
manifests and blobs, read and written, with every digest checked.

It only moves bytes: what to fetch or push is decided by its callers. Authentication
is anonymous, HTTP basic, or the bearer-token flow (a 401 naming a token realm is
answered by fetching a token there with the basic credentials; tokens are cached per
scope). Credentials and tokens never appear in an error message.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

from drplan.sources.images.manifest import (
    DIGEST,
    MANIFEST_TYPES,
    MAX_MANIFEST,
    DigestMismatchError,
    Manifest,
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnreachableError,
    UnsupportedManifestError,
    reference_name,
    sha256_of,
)
from drplan.sources.images.streams import BlobReader, Bounded, IterReader

SCHEMA1_PREFIX = "application/vnd.docker.distribution.manifest.v1"

TIMEOUT = 60.0  # seconds without a byte before a request is given up
MAX_REDIRECTS = 5
MONOLITHIC_MAX = 64 << 20  # larger blobs go up in PATCH chunks of UPLOAD_CHUNK
UPLOAD_CHUNK = 16 << 20
READ_BLOCK = 1 << 20

Body = bytes | io.RawIOBase | BinaryIO | None


@dataclass
class RegistryClient:
    """One registry: ``url`` is ``http://host:port`` or ``https://host``."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cacert: str | None = None
    timeout: float = TIMEOUT
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)
    _basic_first: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(f"registry address {self.address!r} is not http:// or https://")
        self.url = f"{parts.scheme}://{parts.netloc}"

    @property
    def address(self) -> str:
        """The registry's address without credentials: fit for messages and metadata."""
        return re.sub(r"//[^/@]*@", "//", self.url.rstrip("/"))

    # -- reading -----------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers and takes our credentials (``GET /v2/``)."""
        self._request("GET", "/v2/", scope="", what="/v2/").close()

    def tags(self, name: str) -> list[str]:
        """Every tag of a repository, following ``Link`` pagination."""
        path: str | None = f"/v2/{name}/tags/list?n=1000"
        found: list[str] = []
        while path:
            with self._request("GET", path, scope=_pull(name), what=f"repository {name}") as resp:
                body = json.loads(resp.read(MAX_MANIFEST) or b"{}")
                found.extend(body.get("tags") or [])
                path = _next_link(resp.getheader("Link"))
        return found

    def manifest_head(self, name: str, reference: str) -> tuple[str, str] | None:
        """What a tag or digest points to now (``HEAD``): its digest and media type, if the
        registry says both (without downloading the manifest)."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        what = reference_name(name, reference)
        path = f"/v2/{name}/manifests/{reference}"
        with self._request("HEAD", path, scope=_pull(name), headers=headers, what=what) as resp:
            digest = resp.getheader("Docker-Content-Digest") or ""
            media_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if DIGEST.fullmatch(digest) and media_type in MANIFEST_TYPES:
            return digest, media_type
        return None

    def manifest(self, name: str, reference: str) -> Manifest:
        """A manifest by tag or digest; its digest is the SHA-256 of the bytes received,
        checked against ``Docker-Content-Digest`` and the digest asked for."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        what = reference_name(name, reference)
        path = f"/v2/{name}/manifests/{reference}"
        with self._request("GET", path, scope=_pull(name), headers=headers, what=what) as resp:
            raw = resp.read(MAX_MANIFEST + 1)
            told = resp.getheader("Docker-Content-Digest")
            media_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if len(raw) > MAX_MANIFEST:
            raise UnsupportedManifestError(f"{self._at(what)}: manifest larger than 4 MiB")
        try:
            media_type = json.loads(raw).get("mediaType") or media_type
        except (ValueError, AttributeError):
            raise UnsupportedManifestError(f"{self._at(what)}: manifest is not JSON") from None
        if media_type.startswith(SCHEMA1_PREFIX):
            raise UnsupportedManifestError(
                f"{self._at(what)}: Docker schema 1 manifest, which is not supported",
                hint="push the image again with a current client (it writes schema 2 or OCI)",
            )
        if media_type not in MANIFEST_TYPES:
            raise UnsupportedManifestError(
                f"{self._at(what)}: unsupported manifest type {media_type!r}"
            )
        digest = sha256_of(raw)
        for expected in (reference, told or ""):
            if DIGEST.fullmatch(expected) and expected != digest:
                raise DigestMismatchError(
                    f"{self._at(what)}: manifest has digest {digest}, not {expected} (refused)"
                )
        return Manifest(media_type, raw, digest)

    def open_blob(self, name: str, digest: str) -> BlobReader:
        """A blob's content as a stream, verified against ``digest`` at its end."""
        what = f"blob {digest} of {name}"
        resp = self._request("GET", f"/v2/{name}/blobs/{digest}", scope=_pull(name), what=what)
        return BlobReader(resp, digest, self._at(what))

    def blob_size(self, name: str, digest: str) -> int | None:
        """The blob's size if the repository has it, else None."""
        try:
            with self._request(
                "HEAD", f"/v2/{name}/blobs/{digest}", scope=_pull(name), what=digest
            ) as resp:
                return int(resp.getheader("Content-Length") or 0)
        except RegistryNotFoundError:
            return None

    # -- writing -----------------------------------------------------------------------

    def push_blob(
        self,
        name: str,
        digest: str,
        size: int,
        content: Iterable[bytes],
        mount_from: str | None = None,
    ) -> bool:
        """Upload a blob (streamed; in chunks when large); first try mounting it from
        repository ``mount_from`` of this registry. True if its bytes were sent."""
        what = f"blob {digest} to {name}"
        query = {"mount": digest, "from": mount_from} if mount_from else {}
        path = f"/v2/{name}/blobs/uploads/" + ("?" + urlencode(query) if query else "")
        with self._request("POST", path, scope=_push(name, mount_from), what=what) as resp:
            if resp.status == 201:
                return False  # mounted: the registry had it already
            location = self._location(resp, what)
        stream = IterReader(content)
        if size > MONOLITHIC_MAX:
            offset = 0
            while offset < size:
                length = min(UPLOAD_CHUNK, size - offset)
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                }
                with self._request(
                    "PATCH", location, scope=_push(name), headers=headers,
                    body=Bounded(stream, length), what=what,
                ) as resp:  # fmt: skip
                    location = self._location(resp, what)
                offset += length
            body: Body = None
            length = 0
        else:
            body, length = stream, size
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        put = location + ("&" if "?" in location else "?") + urlencode({"digest": digest})
        self._request("PUT", put, scope=_push(name), headers=headers, body=body, what=what).close()
        return True

    def put_manifest(self, name: str, reference: str, manifest: Manifest) -> str:
        """Store a manifest under a digest or tag; returns the digest the registry gave it."""
        what = reference_name(name, reference)
        headers = {"Content-Type": manifest.media_type, "Content-Length": str(len(manifest.raw))}
        with self._request(
            "PUT", f"/v2/{name}/manifests/{reference}", scope=_push(name), headers=headers,
            body=manifest.raw, what=what,
        ) as resp:  # fmt: skip
            return resp.getheader("Docker-Content-Digest") or manifest.digest

    # -- HTTP --------------------------------------------------------------------------

    def _at(self, what: str) -> str:
        return f"registry {self.address}: {what}"

    def _location(self, resp: http.client.HTTPResponse, what: str) -> str:
        location = resp.getheader("Location")
        if not location:
            raise RegistryError(f"{self._at(what)}: the upload answer names no Location")
        return urljoin(self.url + "/", location)

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        body: Body = None,
    ) -> http.client.HTTPResponse:
        """Send one request (authenticating, following redirects); the caller closes the
        answer. Anything but 2xx becomes a typed error."""
        url = urljoin(self.url + "/", path)
        retried = False
        for _ in range(MAX_REDIRECTS + 2):
            sent = dict(headers or {})
            own = urlsplit(url).netloc == urlsplit(self.url).netloc
            if own:  # credentials never go to another host (a redirect to storage)
                sent.update(self._auth_header(scope))
            resp = self._send(method, url, sent, body)
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location") or "")
                resp.close()
                if resp.status == 303:
                    method, body = "GET", None
                continue
            if resp.status == 401 and own and not retried and not _is_stream(body):
                challenge = resp.getheader("WWW-Authenticate") or ""
                resp.close()
                retried = True
                if self._answer(challenge, scope, what):
                    continue
                raise self._refused(401, what)
            if 200 <= resp.status < 300:
                return resp
            raise self._failed(resp, what)
        raise RegistryError(f"{self._at(what)}: too many redirects")

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: Body
    ) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        conn: http.client.HTTPConnection
        host, port = parts.hostname or "", parts.port
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self.cacert)
            conn = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=context, blocksize=READ_BLOCK
            )
        else:
            conn = http.client.HTTPConnection(
                host, port, timeout=self.timeout, blocksize=READ_BLOCK
            )
        target = parts.path + ("?" + parts.query if parts.query else "")
        if body is None and method in ("PUT", "POST", "PATCH"):
            headers.setdefault("Content-Length", "0")
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            reason = exc.reason if isinstance(exc, ssl.SSLError) else exc
            if isinstance(exc, socket.timeout):
                reason = f"no answer within {self.timeout:.0f}s"
            raise RegistryUnreachableError(
                f"registry {self.address} cannot be reached: {reason}",
                hint="check the system's `registry` address and that the registry is up",
            ) from None
        return resp

    def _auth_header(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic_first and self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _answer(self, challenge: str, scope: str, what: str) -> bool:
        """Prepare credentials for a 401's challenge; False when there are none to give."""
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.username is None or self._basic_first:
                return False
            self._basic_first = True
            return True
        if scheme.lower() != "bearer":
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        realm = params.get("realm")
        if not realm:
            return False
        query = {"service": params.get("service", "")}
        wanted = params.get("scope") or scope
        if wanted:
            query["scope"] = wanted
        headers: dict[str, str] = {}
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        resp = self._send("GET", url, headers, None)
        with resp:
            if resp.status in (401, 403):
                raise self._refused(resp.status, what)
            if resp.status != 200:
                raise RegistryError(f"{self._at(what)}: the token service answered {resp.status}")
            try:
                answer = json.loads(resp.read(1 << 20))
                token = answer.get("token") or answer.get("access_token")
            except (ValueError, AttributeError):
                token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self._at(what)}: the token service gave no token")
        self._tokens[scope] = token
        return True

    def _refused(self, status: int, what: str) -> RegistryAuthError:
        if status == 401:
            return RegistryAuthError(
                f"{self._at(what)}: authentication failed (401)",
                hint="check the system's `username` and the password its reference gives",
            )
        return RegistryAuthError(
            f"{self._at(what)}: access denied (403)",
            hint="the registry user needs pull (backup) or push (restore) rights on it",
        )

    def _failed(self, resp: http.client.HTTPResponse, what: str) -> RegistryError:
        status = resp.status
        detail = ""
        try:
            errors = json.loads(resp.read(1 << 16)).get("errors") or []
            first = errors[0] if errors else {}
            detail = f": {first.get('code', '')} {first.get('message', '')}".rstrip()[:200]
        except (ValueError, AttributeError, OSError, http.client.HTTPException):
            pass
        resp.close()
        if status in (401, 403):
            return self._refused(status, what)
        if status == 404:
            return RegistryNotFoundError(f"{self._at(what)}: not found (404){detail}")
        return RegistryError(f"{self._at(what)}: the registry answered {status}{detail}")


def _pull(name: str) -> str:
    return f"repository:{name}:pull"


def _push(name: str, mount_from: str | None = None) -> str:
    scope = f"repository:{name}:pull,push"
    return f"{scope} {_pull(mount_from)}" if mount_from else scope


def _next_link(link: str | None) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link or "")
    return match.group(1) if match else None


def _is_stream(body: object) -> bool:
    return body is not None and not isinstance(body, bytes)
