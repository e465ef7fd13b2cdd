"""Identity at the gateway: OIDC JWTs verified against a JWKS served over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.example.test"
AUDIENCE = "aiplane-gateway"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ROGUE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROTATED_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key, kid: str, alg: str) -> dict:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    data = algorithm.to_jwk(key.public_key(), as_dict=True)
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


def _claims(**overrides) -> dict:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "email": "carol@example.com", "iat": now, "nbf": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict, key=RSA_KEY, alg: str = "RS256", kid: str | None = "rsa-1") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(claims: dict) -> str:
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _tampered(claims: dict) -> str:
    header, _payload, signature = _sign(claims).split(".")
    forged = _b64(json.dumps({**claims, "email": "admin@example.com"}).encode())
    return f"{header}.{forged}.{signature}"


@pytest.fixture()
def oidc_gateway(make_gateway, upstream):
    server, state = upstream
    state.jwks = {"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]}
    return make_gateway(
        "oidc",
        AIPLANE_AUTH__MODE="oidc",
        AIPLANE_AUTH__JWKS_URL=server.url + "/.well-known/jwks.json",
        AIPLANE_AUTH__ISSUER=ISSUER,
        AIPLANE_AUTH__AUDIENCE=AUDIENCE,
        AIPLANE_AUTH__JWKS_REFETCH_INTERVAL_SECONDS="2",
    )


def _call(gateway, headers: dict) -> httpx.Response:
    return httpx.post(
        gateway.url + "/openai/chat/completions",
        headers=headers,
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )


@pytest.mark.parametrize("alg,key,kid", [("RS256", RSA_KEY, "rsa-1"), ("ES256", EC_KEY, "ec-1")])
def test_valid_tokens_pass(oidc_gateway, alg, key, kid):
    assert _call(oidc_gateway, {"authorization": f"Bearer {_sign(_claims(), key, alg, kid)}"}).status_code == 200


@pytest.mark.parametrize("header", ["authorization", "cf-access-jwt-assertion", "cf-access-token", "x-api-key"])
def test_token_accepted_from_each_configured_header(oidc_gateway, header):
    token = _sign(_claims())
    value = f"Bearer {token}" if header == "authorization" else token
    assert _call(oidc_gateway, {header: value}).status_code == 200


BAD_TOKENS = {
    "expired": lambda: _sign(_claims(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200)),
    "not_yet_valid": lambda: _sign(_claims(nbf=int(time.time()) + 3600)),
    "wrong_audience": lambda: _sign(_claims(aud="someone-else")),
    "wrong_issuer": lambda: _sign(_claims(iss="https://evil.example.test")),
    "missing_exp": lambda: _sign(_claims(exp=None)),
    "alg_none": lambda: _unsigned(_claims()),
    "hs256_signed_with_public_key": lambda: _hs256_with_public_key(_claims()),
    "unknown_kid": lambda: _sign(_claims(), ROGUE_KEY, "RS256", "rogue-1"),
    "right_kid_wrong_key": lambda: _sign(_claims(), ROGUE_KEY, "RS256", "rsa-1"),
    "missing_kid": lambda: _sign(_claims(), kid=None),
    "alg_key_confusion": lambda: _sign(_claims(), EC_KEY, "ES256", "rsa-1"),
    "tampered_payload": lambda: _tampered(_claims()),
    "no_subject": lambda: _sign(_claims(sub=None, email=None)),
    "oversized_subject": lambda: _sign(_claims(email="a" * 400 + "@example.com")),
    "garbage": lambda: "not.a.jwt",
    "dev_token_in_oidc_mode": lambda: jwt.encode(_claims(iss="aiplane-dev", aud="aiplane"), EC_KEY, "ES256", headers={"kid": "dev"}),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_tokens_get_401_that_leaks_nothing(oidc_gateway, upstream, name):
    _server, state = upstream
    before = len(state.requests)
    response = _call(oidc_gateway, {"authorization": f"Bearer {BAD_TOKENS[name]()}"})
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == {"type": "authentication_error", "message": "missing or invalid credentials"}
    assert len(state.requests) == before  # nothing reached the provider


def test_missing_token_and_wrong_scheme_get_401(oidc_gateway):
    assert _call(oidc_gateway, {}).status_code == 401
    assert _call(oidc_gateway, {"authorization": f"Basic {_sign(_claims())}"}).status_code == 401


def test_unknown_kid_refetch_is_rate_limited_and_rotation_works(oidc_gateway, upstream):
    _server, state = upstream
    assert _call(oidc_gateway, {"authorization": f"Bearer {_sign(_claims())}"}).status_code == 200
    fetches = state.jwks_fetches
    for _ in range(5):
        rogue = _sign(_claims(), ROGUE_KEY, "RS256", "rogue-2")
        assert _call(oidc_gateway, {"authorization": f"Bearer {rogue}"}).status_code == 401
    assert state.jwks_fetches - fetches <= 1

    # The IdP rotates in a new key; after the refetch interval the gateway picks it up.
    state.jwks = {"keys": state.jwks["keys"] + [_jwk(ROTATED_KEY, "ec-2", "ES256")]}
    time.sleep(2.1)
    rotated = _sign(_claims(), ROTATED_KEY, "ES256", "ec-2")
    assert _call(oidc_gateway, {"authorization": f"Bearer {rotated}"}).status_code == 200


def test_dev_mode_rejects_tokens_from_another_data_dir(make_gateway):
    first = make_gateway("dev-a")
    second = make_gateway("dev-b")
    foreign = second.token("mallory@example.com")
    assert _call(first, {"authorization": f"Bearer {foreign}"}).status_code == 401
    assert _call(first, {"authorization": f"Bearer {first.token()}"}).status_code == 200
