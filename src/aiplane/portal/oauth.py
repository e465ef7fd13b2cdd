"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for the portal, so MCP clients that only speak
OAuth find our identity provider by themselves.

The portal is a resource server, never an authorization server: the metadata names the configured
OIDC issuer (`auth.issuer`), the client signs in there (authorization code + PKCE, per the MCP
authorization spec) and brings back a JWT the gateway's verifier checks as usual (issuer, audience,
signature). A 401 from the portal says where the metadata lives:
`WWW-Authenticate: Bearer resource_metadata="https://host/.well-known/oauth-protected-resource/mcp"`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aiplane.config import Settings

WELL_KNOWN = "/.well-known/oauth-protected-resource"
# What a Host header may be when the public URL is derived from it (development, no
# `portal.resource_url`): a name or an IPv4/IPv6 literal and a port, nothing that could break out
# of a quoted header parameter or point the metadata at a path of the client's choosing.
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
_SAFE_URL = re.compile(r"^https?://[\x21-\x7e]+$")


@dataclass(frozen=True)
class ProtectedResource:
    """The portal's public identity as an OAuth protected resource."""

    # The issuer clients sign in with; the same `iss` the verifier accepts.
    authorization_server: str
    # The MCP endpoint's public URL ("https://ai.example.com/mcp"), or None to derive it per request.
    resource_url: str | None
    # The path the MCP endpoint is served at, for the derived URL and the path-suffixed metadata URL.
    mcp_path: str = "/mcp"
    scopes: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, mcp_path: str = "/mcp") -> ProtectedResource | None:
        """Published only with SSO (`auth.mode = "oidc"`): dev tokens have no authorization server."""
        if settings.auth.mode != "oidc" or not settings.auth.issuer:
            return None
        configured = str(settings.portal.resource_url).rstrip("/") if settings.portal.resource_url else None
        return cls(settings.auth.issuer, configured, mcp_path, tuple(settings.portal.oauth_scopes))

    def resource(self, scope: Scope) -> str | None:
        """The resource identifier clients must see: the configured URL, else this request's own
        scheme, Host and MCP path (None when the Host header is not a plain host[:port])."""
        if self.resource_url is not None:
            return self.resource_url
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not _HOST.fullmatch(host):
            return None
        scheme = "https" if scope.get("scheme") == "https" else "http"
        return f"{scheme}://{host}{self.mcp_path}"

    def metadata_url(self, scope: Scope) -> str | None:
        """Where the metadata for this resource lives (RFC 9728 section 3.1: the well-known path
        inserted before the resource's path)."""
        resource = self.resource(scope)
        if resource is None:
            return None
        scheme, _, rest = resource.partition("://")
        authority, slash, path = rest.partition("/")
        return f"{scheme}://{authority}{WELL_KNOWN}{slash}{path}".rstrip("/")

    def challenge(self, scope: Scope) -> bytes:
        """The WWW-Authenticate value for a 401; `error="invalid_token"` when a bearer token was
        sent and refused (RFC 6750 section 3.1), none when there was no token at all."""
        url = self.metadata_url(scope)
        parts = []
        authorization = dict(scope.get("headers") or []).get(b"authorization", b"")
        if authorization[:7].lower() == b"bearer " and authorization[7:].strip():
            parts.append('error="invalid_token"')
        if url is not None and _SAFE_URL.fullmatch(url) and '"' not in url and "\\" not in url:
            parts.append(f'resource_metadata="{url}"')
        if self.scopes:
            parts.append(f'scope="{" ".join(self.scopes)}"')
        return ("Bearer " + ", ".join(parts) if parts else "Bearer").encode("latin-1")

    def document(self, scope: Scope) -> dict[str, Any] | None:
        resource = self.resource(scope)
        if resource is None:
            return None
        document: dict[str, Any] = {
            "resource": resource,
            "authorization_servers": [self.authorization_server],
            "bearer_methods_supported": ["header"],
            "resource_name": "aiplane MCP portal",
        }
        if self.scopes:
            document["scopes_supported"] = list(self.scopes)
        return document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET the metadata document (public: it names only public URLs)."""
        if scope["type"] != "http":
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _send(send, 405, b'{"error": "method not allowed"}', [(b"allow", b"GET, HEAD")])
            return
        document = self.document(scope)
        if document is None:
            await _send(send, 400, b'{"error": "bad Host header"}')
            return
        # Derived from Host: shared caches must not hand one host's document to another.
        vary = [] if self.resource_url is not None else [(b"vary", b"Host")]
        await _send(send, 200, json.dumps(document).encode(), [(b"cache-control", b"public, max-age=3600"), *vary])

    def routes(self) -> list[Route]:
        """Both well-known forms: path-suffixed (RFC 9728) and at the root (older MCP clients). A
        configured URL with another path (a proxy prefix such as /tools/mcp) is served too, in
        case the proxy forwards its well-known path unchanged."""
        paths = [WELL_KNOWN + self.mcp_path]
        if self.resource_url is not None:
            public = urlsplit(self.resource_url).path.rstrip("/")
            if public and WELL_KNOWN + public not in paths:
                paths.append(WELL_KNOWN + public)
        return [Route(path, endpoint=self, methods=["GET", "HEAD"]) for path in [*paths, WELL_KNOWN]]


async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
