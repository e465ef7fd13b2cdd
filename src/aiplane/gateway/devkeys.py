"""Dev mode: a local signing key so one machine works without an SSO provider.

The private key lives in the data dir with mode 0600; whoever can read it can mint tokens,
exactly like whoever can read an IdP's signing key. Production deployments use ``auth.mode = "oidc"``.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK

from aiplane.store.files import FILE_MODE, private_dir, tighten

DEV_ISSUER = "aiplane-dev"
DEV_AUDIENCE = "aiplane"
DEV_ALGORITHM = "ES256"
KEY_FILE = "dev-signing-key.pem"


def _key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def load_or_create_signing_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    path = _key_path(data_dir)
    if path.exists():
        tighten(path, FILE_MODE)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return key
    private_dir(data_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two processes starting at once must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return load_or_create_signing_key(data_dir)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), FILE_MODE)  # whatever the umask
        fh.write(pem)
    return key


def key_id(key: ec.EllipticCurvePrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(public).hexdigest()[:16]


def public_jwk(key: ec.EllipticCurvePrivateKey) -> PyJWK:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": key_id(key), "alg": DEV_ALGORITHM, "use": "sig"})
    return PyJWK.from_dict(jwk)


def issue_token(
    data_dir: Path,
    user: str,
    ttl_seconds: int,
    admin_claim: str = "groups",
    admin_value: str | None = None,
    groups: list[str] | None = None,
) -> str:
    key = load_or_create_signing_key(data_dir)
    now = int(time.time())
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": user,
        "email": user,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    listed = list(groups or []) + ([admin_value] if admin_value is not None else [])
    if listed:
        claims[admin_claim] = listed
    return jwt.encode(claims, key, algorithm=DEV_ALGORITHM, headers={"kid": key_id(key)})
