"""An OIDC identity provider double with the device authorization grant (RFC 8628).

Discovery, device code, token and JWKS endpoints in their real shapes. The first token poll
answers ``authorization_pending``; later polls return an ID token, unless ``deny`` is set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

CLIENT_ID = "aiplane-cli"


@dataclass
class IdpState:
    issuer: str = ""
    email: str = "erin@example.com"
    deny: bool = False
    polls: int = 0
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))


async def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}


def build_idp(state: IdpState) -> Starlette:
    async def discovery(_request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": state.issuer,
                "device_authorization_endpoint": f"{state.issuer}/device/code",
                "token_endpoint": f"{state.issuer}/token",
                "jwks_uri": f"{state.issuer}/jwks",
                "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"],
            }
        )

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
            Route("/device/code", device_code, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/jwks", jwks),
        ]
    )
