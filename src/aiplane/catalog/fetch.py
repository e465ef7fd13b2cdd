"""Fetching catalog documents over HTTP(S) from hosts an operator allowed, and nowhere else.

A catalog file is hostile input, and every URL in it (Location targets, `$text`/`$json`/`$yaml`
placeholders) would otherwise make the ingesting machine a request proxy into its own network.
So remote reads are:

- opt-in per host (`catalog_loader.allowed_hosts`: exact names or `*.example.com`);
- refused for private, loopback, link-local, shared, reserved and multicast addresses (IPv4 in
  IPv6 unwrapped) unless the address lies in `catalog_loader.allowed_networks`. The check runs on
  the addresses DNS returns, and the connection goes to the address that was checked, so a name
  cannot pass the check and then resolve elsewhere;
- redirected only within the same host (never to another host, never from https to http);
- bounded in bytes (Content-Length checked first, the body counted while reading) and in time
  (one deadline per fetch across DNS, connect, redirects and body);
- sent without cookies, credentials, proxies from the environment or content encodings.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpcore

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 ranges that embed or translate to IPv4 addresses, or are deprecated site-local: what they
# reach depends on the network, so they count as non-public unless `allowed_networks` names them.
_NOT_PUBLIC_V6 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "::/96",  # IPv4-compatible (::7f00:1 is 127.0.0.1 on some stacks)
        "::ffff:0:0:0/96",  # SIIT IPv4-translated
        "64:ff9b::/96",  # NAT64 well-known prefix
        "64:ff9b:1::/48",  # NAT64 local-use prefix
        "fec0::/10",  # site-local (deprecated, still routed internally)
    )
)
_USER_AGENT = "aiplane-catalog"
# getaddrinfo has no timeout of its own; a small pool lets a fetch stop waiting for it.
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="catalog-dns")


class FetchRefused(Exception):
    """A URL was not fetched; the message says why and never carries credentials or bodies."""


@dataclass(frozen=True, slots=True)
class RemotePolicy:
    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()
    timeout_seconds: float = 20.0
    max_bytes: int = 8 * 1024 * 1024
    max_redirects: int = 3

    def host_allowed(self, host: str, port: int | None = None, scheme: str = "https") -> bool:
        """Whether an entry allows this host and port: `name` allows the scheme's default port
        only, `name:port` that port too, so a catalog file cannot walk an allowed host's other
        services (a database or admin port on an internal Git server)."""
        host = normal_host(host)
        port = port or DEFAULT_PORTS.get(scheme)
        for raw in self.allowed_hosts:
            entry, entry_port = split_entry(raw)
            if (entry_port or DEFAULT_PORTS.get(scheme)) != port:
                continue
            if entry == "*":
                return True
            if entry.startswith("*."):
                if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                    return True
            elif host == entry:
                return True
        return False

    def address_allowed(self, address: IPAddress) -> bool:
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address):
            embedded = address.ipv4_mapped or address.sixtofour
            if embedded is None and address in _NAT64:
                embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            if embedded is not None:
                candidates.append(embedded)
        if any(c in network for c in candidates for network in self.allowed_networks if c.version == network.version):
            return True
        if isinstance(address, ipaddress.IPv6Address) and any(address in network for network in _NOT_PUBLIC_V6):
            return False
        return all(c.is_global and not c.is_multicast for c in candidates)


DEFAULT_PORTS = {"http": 80, "https": 443}


def split_entry(entry: str) -> tuple[str, int | None]:
    """An allowlist entry as (host, port or None): `name`, `name:8443`, `[::1]:8080`, `*.corp`."""
    entry = entry.strip()
    port: int | None = None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return normal_host(host), port
    if entry.count(":") == 1:
        host, _, digits = entry.partition(":")
        if digits.isdigit():
            return normal_host(host), int(digits)
    return normal_host(entry), None


def normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


def redact(url: str) -> str:
    """A URL fit for a message or a stored source: no user-info, no query string (either may hold a token)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(malformed URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    # The query is replaced by a short digest: it may carry a token, yet two URLs that differ
    # only there are two locations (ownership compares these strings).
    query = f"?…{hashlib.sha256(parts.query.encode()).hexdigest()[:12]}" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"


def raw_github(url: str) -> str:
    # Backstage examples point at github.com/.../blob/...; the raw file lives elsewhere.
    parts = urlsplit(url)
    if parts.netloc == "github.com" and "/blob/" in parts.path:
        owner_repo, _, rest = parts.path.partition("/blob/")
        return f"https://raw.githubusercontent.com{owner_repo}/{rest}"
    return url


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and handshake ends by the fetch's deadline.

    Per-operation timeouts alone let a server drip one header byte just inside each timeout
    for ever; clamping each operation to what is left of one deadline bounds the whole fetch.
    """

    def __init__(self, inner: httpcore.NetworkStream, backend: _GuardedBackend) -> None:
        self._inner = inner
        self._backend = backend

    def _left(self, timeout: float | None) -> float:
        left = self._backend.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, self._left(timeout)), self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves the host itself, checks every address, and connects to a checked one."""

    def __init__(self, policy: RemotePolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()
        self.deadline = float("inf")  # set by the Fetcher before each request

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("deadline passed")
        timeout = left if timeout is None else min(timeout, left)
        addresses = _resolve(host, port, timeout)
        refused = [a for a in addresses if not self._policy.address_allowed(a)]
        if refused:
            raise FetchRefused(
                f"{host} resolves to a private, loopback or link-local address ({refused[0]}); "
                "allow its network in catalog_loader.allowed_networks to fetch from it"
            )
        last: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
                return _DeadlineStream(stream, self)
            except httpcore.ConnectError as exc:
                last = exc
        raise FetchRefused(f"cannot connect to {host} ({last.__class__.__name__ if last else 'no address'})")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:  # pragma: no cover
        raise FetchRefused("unix sockets are never used for catalog fetches")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - retries are off
        time.sleep(seconds)


def _resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        raise FetchRefused(f"resolving {host} timed out") from None
    except (OSError, UnicodeError):
        raise FetchRefused(f"cannot resolve {host}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchRefused(f"cannot resolve {host}")
    return addresses


class Fetcher:
    """One per ingest run: a connection pool that only ever reaches allowed, checked addresses."""

    def __init__(self, policy: RemotePolicy) -> None:
        self.policy = policy
        self._backend = _GuardedBackend(policy)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=4,
            retries=0,
            network_backend=self._backend,
        )

    def close(self) -> None:
        self._pool.close()

    def check(self, url: str) -> str | None:
        """Why `url` may not be fetched at all (scheme, credentials, host), or None."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "malformed URL"
        if parts.scheme not in ("http", "https"):
            return f"scheme '{parts.scheme}:' is not fetched; only http(s) URLs are"
        if not parts.hostname:
            return "the URL has no host"
        if parts.username is not None or parts.password is not None:
            return "URLs with credentials are never fetched"
        if port == 0:
            return "malformed URL"
        if not self.policy.host_allowed(parts.hostname, port, parts.scheme):
            shown = normal_host(parts.hostname) + (f":{port}" if port else "")
            return f"host {shown} is not in catalog_loader.allowed_hosts"
        return None

    def fetch(self, url: str) -> bytes:
        """The body of `url` (status 200 only); raises FetchRefused."""
        why = self.check(url)
        if why is not None:
            raise FetchRefused(why)
        deadline = time.monotonic() + self.policy.timeout_seconds
        current = raw_github(url)
        origin = urlsplit(current)
        for _hop in range(self.policy.max_redirects + 1):
            status, location, body = self._get(current, deadline)
            if status in (301, 302, 303, 307, 308):
                if not location:
                    raise FetchRefused(f"HTTP {status} without a Location")
                try:
                    target = urljoin(current, location)
                except ValueError:
                    raise FetchRefused("redirect to a malformed URL") from None
                why = _redirect_problem(origin, target)
                if why is None and _port(target) != _port(current):
                    # A new port must pass the allowlist as any URL does, whatever the scheme:
                    # an allowed http port must not lead to an unlisted https port.
                    why = self.check(target)
                if why is not None:
                    raise FetchRefused(why)
                current = target
                continue
            if status != 200:
                raise FetchRefused(f"HTTP {status}")
            return body
        raise FetchRefused(f"more than {self.policy.max_redirects} redirects")

    def _get(self, url: str, deadline: float) -> tuple[int, str | None, bytes]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchRefused(f"took longer than {self.policy.timeout_seconds:g} s")
        self._backend.deadline = deadline
        timeouts = {"connect": remaining, "read": remaining, "write": remaining, "pool": remaining}
        headers = [
            (b"User-Agent", _USER_AGENT.encode()),
            (b"Accept", b"application/yaml, application/json, text/plain, */*"),
            (b"Accept-Encoding", b"identity"),
        ]
        try:
            with self._pool.stream("GET", _request_url(url), headers=headers, extensions={"timeout": timeouts}) as response:
                status = response.status
                values = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                if status in (301, 302, 303, 307, 308):
                    return status, values.get("location"), b""
                if status != 200:
                    return status, None, b""
                encoding = values.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise FetchRefused(f"the response is {encoding}-encoded; only plain bodies are read")
                declared = values.get("content-length", "").strip()
                if declared.isdigit() and int(declared) > self.policy.max_bytes:
                    raise FetchRefused(f"the document is larger than {self.policy.max_bytes} bytes")
                chunks, size = [], 0
                for chunk in response.iter_stream():
                    size += len(chunk)
                    if size > self.policy.max_bytes:
                        raise FetchRefused(f"the document is larger than {self.policy.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise FetchRefused(f"took longer than {self.policy.timeout_seconds:g} s")
                    chunks.append(chunk)
                return status, None, b"".join(chunks)
        except FetchRefused:
            raise
        except httpcore.TimeoutException:
            raise FetchRefused(f"took longer than {self.policy.timeout_seconds:g} s") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpcore.LocalProtocolError) as exc:
            raise FetchRefused(f"cannot fetch ({exc.__class__.__name__})") from None
        except Exception as exc:  # noqa: BLE001 - a hostile server must never surface as a traceback
            raise FetchRefused(f"cannot fetch ({exc.__class__.__name__})") from None


def _request_url(url: str) -> httpcore.URL:
    """The URL httpcore connects to, built from the very parts that were checked (no second parser)."""
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~") if parts.query else ""
    return httpcore.URL(
        scheme=parts.scheme.encode("ascii"),
        host=normal_host(parts.hostname or "").encode("ascii"),
        port=parts.port,
        target=(path + (f"?{query}" if query else "")).encode("ascii"),
    )


def _port(url: str) -> int | None:
    parts = urlsplit(url)
    return parts.port or DEFAULT_PORTS.get(parts.scheme)


def _redirect_problem(origin: Any, target: str) -> str | None:
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:
        return "redirect to a malformed URL"
    if parts.scheme not in ("http", "https"):
        return f"redirect to a '{parts.scheme}:' URL refused"
    if origin.scheme == "https" and parts.scheme == "http":
        return "redirect from https to http refused"
    if parts.username is not None or parts.password is not None:
        return "redirect to a URL with credentials refused"
    if normal_host(parts.hostname or "") != normal_host(origin.hostname or ""):
        return f"redirect to another host ({normal_host(parts.hostname or '')}) refused"
    if (port or DEFAULT_PORTS[parts.scheme]) != (origin.port or DEFAULT_PORTS[origin.scheme]) and parts.scheme == origin.scheme:
        return "redirect to another port refused"
    return None
