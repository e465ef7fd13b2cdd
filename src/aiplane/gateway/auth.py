"""Caller identity: JWTs verified against an OIDC JWKS, or against the local dev signing key."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from jwt import PyJWK, PyJWKSet

from aiplane.config import AuthSettings, Settings
from aiplane.logs import log_fields

log = logging.getLogger("aiplane.auth")


# The identities table's key width: an email address's maximum length.
MAX_GROUPS = 1000
MAX_SUBJECT_LENGTH = 320


class AuthError(Exception):
    """Why a token was refused; logged server-side, never sent to the client."""


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    is_admin: bool
    expires_at: float
    # The token's group claim (auth.admin_claim, "groups" by default), for per-group policies.
    groups: tuple[str, ...] = ()


class JwksCache:
    """Keys by kid. An unknown kid refetches the JWKS, at most once per ``refetch_interval``."""

    def __init__(
        self,
        url: str | None,
        session: Callable[[], aiohttp.ClientSession] | None,
        cache_seconds: float,
        refetch_interval: float,
        static_keys: dict[str, PyJWK] | None = None,
    ) -> None:
        self._url = url
        self._session = session
        self._cache_seconds = cache_seconds
        self._refetch_interval = refetch_interval
        self._keys: dict[str, PyJWK] = dict(static_keys or {})
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> PyJWK:
        if self._url is None:
            if kid in self._keys:
                return self._keys[kid]
            raise AuthError("unknown kid")
        now = time.monotonic()
        if kid in self._keys and now - self._fetched_at < self._cache_seconds:
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at >= self._cache_seconds
            if (kid not in self._keys or stale) and now - self._attempted_at >= self._refetch_interval:
                self._attempted_at = now
                await self._refresh()
        if kid in self._keys:
            return self._keys[kid]
        raise AuthError("unknown kid")

    async def _refresh(self) -> None:
        assert self._session is not None and self._url is not None
        try:
            async with self._session().get(self._url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                response.raise_for_status()
                keyset = PyJWKSet.from_dict(await response.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWKSetError) as exc:
            # Keep serving the keys we have; an IdP blip must not log everyone out.
            log.warning("JWKS fetch failed", extra=log_fields(error_type=exc.__class__.__name__))
            return
        keys = {k.key_id: k for k in keyset.keys if k.key_id}
        if keys:
            self._keys = keys
            self._fetched_at = time.monotonic()
            log.info("JWKS refreshed", extra=log_fields(keys=len(keys)))


class TokenVerifier:
    def __init__(self, settings: AuthSettings, keys: JwksCache, issuer: str, audience: str) -> None:
        self._settings = settings
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithms = list(settings.algorithms)
        # Verified tokens by digest: signature checks cost more than the rest of the request path.
        self._verified: OrderedDict[bytes, Identity] = OrderedDict()
        self._verified_max = 50_000

    def token_from_headers(self, headers: Any) -> str | None:
        for name in self._settings.token_headers:
            value = headers.get(name)
            if not value:
                continue
            if name == "authorization":
                scheme, _, rest = value.partition(" ")
                if scheme.lower() != "bearer" or not rest.strip():
                    continue
                value = rest
            return value.strip()
        return None

    async def verify(self, token: str) -> Identity:
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            if cached.expires_at + self._settings.leeway_seconds > time.time():
                return cached
            del self._verified[digest]
        identity = await self._verify_uncached(token)
        self._verified[digest] = identity
        if len(self._verified) > self._verified_max:
            self._verified.popitem(last=False)
        return identity

    async def _verify_uncached(self, token: str) -> Identity:
        if len(token) > 16_384:
            raise AuthError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise AuthError(f"algorithm not allowed: {str(alg)[:16]}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no kid")
        jwk = await self._keys.key(kid)
        try:
            claims = jwt.decode(
                token,
                key=jwk.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            # A key of the wrong type for the token's alg lands here too.
            raise AuthError(exc.__class__.__name__) from None
        subject = next(
            (claims[c] for c in self._settings.subject_claims if isinstance(claims.get(c), str) and claims[c]),
            None,
        )
        if subject is None:
            raise AuthError("token has no subject claim")
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise AuthError("subject claim too long")
        raw_groups = claims.get(self._settings.admin_claim)
        groups = tuple(g for g in raw_groups if isinstance(g, str)) if isinstance(raw_groups, list) else (
            (raw_groups,) if isinstance(raw_groups, str) else ())
        if len(groups) > MAX_GROUPS:
            # Never cut the list: group rules (quotas, endpoint families) would silently miss the rest.
            raise AuthError(f"token lists more than {MAX_GROUPS} groups")
        return Identity(subject=subject, is_admin=self._is_admin(claims), expires_at=float(claims["exp"]), groups=groups)

    def _is_admin(self, claims: dict[str, Any]) -> bool:
        value = claims.get(self._settings.admin_claim)
        wanted = set(self._settings.admin_values)
        if isinstance(value, str):
            return value in wanted
        if isinstance(value, list):
            return any(isinstance(v, str) and v in wanted for v in value)
        if isinstance(value, bool):
            return value and "true" in wanted
        return False


def make_verifier(settings: Settings, session: Callable[[], aiohttp.ClientSession]) -> TokenVerifier:
    """The verifier for the configured auth mode: the local dev key, or the OIDC provider's JWKS."""
    from aiplane.gateway import devkeys

    auth = settings.auth
    if auth.mode == "dev":
        key = devkeys.load_or_create_signing_key(settings.data_dir)
        jwk = devkeys.public_jwk(key)
        keys = JwksCache(None, None, auth.jwks_cache_seconds, auth.jwks_refetch_interval_seconds, {jwk.key_id: jwk})
        return TokenVerifier(auth, keys, devkeys.DEV_ISSUER, devkeys.DEV_AUDIENCE)
    assert auth.jwks_url and auth.issuer and auth.audience  # enforced by AuthSettings
    keys = JwksCache(auth.jwks_url, session, auth.jwks_cache_seconds, auth.jwks_refetch_interval_seconds)
    return TokenVerifier(auth, keys, auth.issuer, auth.audience)
