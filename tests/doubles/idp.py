"""An OIDC identity provider double: the device authorization grant (RFC 8628) for `aiplane login`,
and the authorization code grant with PKCE (RFC 7636), dynamic client registration (RFC 7591) and
resource indicators (RFC 8707) that MCP clients use.

Discovery (OIDC and RFC 8414 metadata), device code, authorize, token, register and JWKS endpoints
in their real shapes and with their real error codes. Device flow: the first token poll answers
``authorization_pending``; later polls return an ID token, unless ``deny`` is set. Code flow: the
"user" consents at once (no page); access tokens are RS256 JWTs for ``audience``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

CLIENT_ID = "aiplane-cli"


@dataclass
class IdpState:
    issuer: str = ""
    email: str = "erin@example.com"
    deny: bool = False
    polls: int = 0
    # The audience of access tokens from the code flow (the API the IdP issues them for).
    audience: str = "aiplane"
    groups: list[str] = field(default_factory=list)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What clients asked for, for tests: (endpoint, resource indicator) pairs.
    resources: list[tuple[str, str | None]] = field(default_factory=list)
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))


async def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"cache-control": "no-store"})


def _loopback_or_https(uri: str) -> bool:
    parts = urlsplit(uri)
    return (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))) \
        and not parts.fragment


def build_idp(state: IdpState) -> Starlette:
    async def discovery(_request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": state.issuer,
                "authorization_endpoint": f"{state.issuer}/authorize",
                "device_authorization_endpoint": f"{state.issuer}/device/code",
                "token_endpoint": f"{state.issuer}/token",
                "registration_endpoint": f"{state.issuer}/register",
                "jwks_uri": f"{state.issuer}/jwks",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
                "scopes_supported": ["openid", "email", "profile"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def register(request: Request) -> JSONResponse:
        try:
            metadata = await request.json()
        except ValueError:
            return _oauth_error("invalid_client_metadata", "body is not JSON")
        redirect_uris = metadata.get("redirect_uris") if isinstance(metadata, dict) else None
        if not isinstance(redirect_uris, list) or not redirect_uris or not all(
                isinstance(u, str) and _loopback_or_https(u) for u in redirect_uris):
            return _oauth_error("invalid_redirect_uri", "redirect_uris must be https or loopback http URIs")
        method = metadata.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in ("none", "client_secret_post"):
            return _oauth_error("invalid_client_metadata", f"token_endpoint_auth_method {method} is not supported")
        client_id = "mcp-" + secrets.token_hex(8)
        client = {**metadata, "client_id": client_id, "client_id_issued_at": int(time.time()),
                  "token_endpoint_auth_method": method,
                  "grant_types": metadata.get("grant_types") or ["authorization_code"],
                  "response_types": metadata.get("response_types") or ["code"]}
        if method == "client_secret_post":
            client["client_secret"] = secrets.token_urlsafe(24)
            client["client_secret_expires_at"] = 0
        state.clients[client_id] = client
        return JSONResponse(client, status_code=201)

    async def authorize(request: Request):  # noqa: ANN202
        params = request.query_params
        client = state.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        # Never redirect to an unregistered URI (RFC 6749 section 4.1.2.1): an error page instead.
        if client is None or redirect_uri not in client["redirect_uris"]:
            return _oauth_error("invalid_request", "unknown client or redirect_uri")

        def back(**values: str) -> RedirectResponse:
            values = {**values, "iss": state.issuer}
            if params.get("state") is not None:
                values["state"] = params["state"]
            return RedirectResponse(f"{redirect_uri}?{urlencode(values)}", status_code=302)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        if state.deny:
            return back(error="access_denied")
        state.resources.append(("authorize", params.get("resource")))
        code = secrets.token_urlsafe(24)
        state.codes[code] = {"client_id": client["client_id"], "redirect_uri": redirect_uri, "expires": time.time() + 60,
                             "challenge": params["code_challenge"], "resource": params.get("resource"),
                             "scope": params.get("scope", "")}
        return back(code=code)

    def _client_ok(form: dict[str, str]) -> dict[str, Any] | None:
        client = state.clients.get(form.get("client_id", ""))
        if client is None:
            return None
        if client["token_endpoint_auth_method"] == "client_secret_post" and form.get("client_secret") != client["client_secret"]:
            return None
        return client

    def _tokens(client_id: str, scope: str, resource: str | None) -> JSONResponse:
        now = int(time.time())
        claims = {"iss": state.issuer, "aud": state.audience, "sub": "user-erin", "email": state.email, "iat": now,
                  "exp": now + 3600, "client_id": client_id, "scope": scope, "groups": state.groups}
        access = jwt.encode(claims, state.key, algorithm="RS256", headers={"kid": "idp-1", "typ": "at+jwt"})
        refresh = secrets.token_urlsafe(24)
        state.refresh_tokens[refresh] = {"client_id": client_id, "scope": scope, "resource": resource}
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 3600, "scope": scope,
                             "refresh_token": refresh}, headers={"cache-control": "no-store"})

    async def device_code(request: Request) -> JSONResponse:
        form = await _form(request)
        if form.get("client_id") != CLIENT_ID:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse(
            {
                "device_code": "dev-code-123",
                "user_code": "WDJB-MJHT",
                "verification_uri": f"{state.issuer}/activate",
                "expires_in": 60,
                "interval": 1,
            }
        )

    async def token(request: Request) -> JSONResponse:
        form = await _form(request)
        if form.get("grant_type") == "authorization_code":
            client = _client_ok(form)
            if client is None:
                return _oauth_error("invalid_client", "unknown client or bad secret", 401)
            grant = state.codes.pop(form.get("code", ""), None)  # single use
            if grant is None or grant["expires"] < time.time() or grant["client_id"] != client["client_id"] \
                    or grant["redirect_uri"] != form.get("redirect_uri"):
                return _oauth_error("invalid_grant", "unknown, used or expired code, or another client's")
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if not secrets.compare_digest(challenge, grant["challenge"]):
                return _oauth_error("invalid_grant", "PKCE verification failed")
            state.resources.append(("token", form.get("resource")))
            if form.get("resource") != grant["resource"]:
                return _oauth_error("invalid_target", "resource differs from the authorization request")
            return _tokens(client["client_id"], grant["scope"], grant["resource"])
        if form.get("grant_type") == "refresh_token":
            client = _client_ok(form)
            grant = state.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if client is None or grant is None or grant["client_id"] != client["client_id"]:
                return _oauth_error("invalid_grant", "unknown refresh token")
            return _tokens(client["client_id"], grant["scope"], grant["resource"])
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" or form.get("device_code") != "dev-code-123":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        state.polls += 1
        if state.deny:
            return JSONResponse({"error": "access_denied"}, status_code=400)
        if state.polls == 1:
            return JSONResponse({"error": "authorization_pending"}, status_code=400)
        now = int(time.time())
        claims = {"iss": state.issuer, "aud": CLIENT_ID, "sub": "user-erin", "email": state.email, "iat": now, "exp": now + 3600}
        id_token = jwt.encode(claims, state.key, algorithm="RS256", headers={"kid": "idp-1"})
        return JSONResponse({"access_token": "opaque-access", "id_token": id_token, "token_type": "Bearer", "expires_in": 3600})

    async def jwks(_request: Request) -> JSONResponse:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(state.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**public, "kid": "idp-1", "alg": "RS256", "use": "sig"}]})

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/.well-known/oauth-authorization-server", discovery),
            Route("/register", register, methods=["POST"]),
            Route("/authorize", authorize),
            Route("/device/code", device_code, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/jwks", jwks),
        ]
    )
