"""`aiplane login`: get a token for the gateway and print it (for `opencode auth login`).

Dev mode signs a token with the local dev key (the gateway must share this machine's data
dir). OIDC mode runs the device authorization grant (RFC 8628) against the IdP the gateway
trusts: the user opens a URL and enters a code, and the ID token is printed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class LoginError(Exception):
    pass


@dataclass
class GatewayAuthInfo:
    mode: str
    issuer: str | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")


def _timeout(seconds: float = 15) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    try:
        async with session.request(method, url, timeout=_timeout(), **kwargs) as response:
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, None
    except TimeoutError:
        raise LoginError(f"{url} did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise LoginError(f"cannot reach {url} ({exc.__class__.__name__})") from None


async def gateway_auth_info(gateway: str) -> GatewayAuthInfo:
    async with aiohttp.ClientSession(trust_env=True) as session:
        status, body = await _json(session, "GET", gateway.rstrip("/") + "/v1/auth/info")
    if status != 200 or not isinstance(body, dict) or body.get("mode") not in ("dev", "oidc"):
        raise LoginError(f"{gateway} is not an aiplane gateway (GET /v1/auth/info answered {status})")
    return GatewayAuthInfo(
        mode=body["mode"],
        issuer=body.get("issuer"),
        client_id=body.get("client_id"),
        scopes=tuple(body.get("scopes") or ("openid", "email", "profile")),
    )


def git_email() -> str | None:
    try:
        result = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    email = result.stdout.strip()
    return email or None


async def device_flow(info: GatewayAuthInfo, notify=print, sleep=asyncio.sleep) -> str:  # noqa: ANN001
    """Run the device authorization grant and return the ID token (or access token if none)."""
    if not info.issuer or not info.client_id:
        raise LoginError("the gateway has no auth.device_client_id configured; ask its admins to enable device login")
    async with aiohttp.ClientSession(trust_env=True) as session:
        status, discovery = await _json(session, "GET", info.issuer.rstrip("/") + "/.well-known/openid-configuration")
        if status != 200 or not isinstance(discovery, dict):
            raise LoginError(f"the identity provider's OIDC discovery answered {status}")
        device_endpoint = discovery.get("device_authorization_endpoint")
        token_endpoint = discovery.get("token_endpoint")
        if not device_endpoint or not token_endpoint:
            raise LoginError("the identity provider does not offer the device authorization grant")
        status, grant = await _json(
            session, "POST", device_endpoint, data={"client_id": info.client_id, "scope": " ".join(info.scopes)}
        )
        if status != 200 or not isinstance(grant, dict) or "device_code" not in grant:
            raise LoginError(f"device authorization was refused ({status}: {_oauth_error(grant)})")
        uri = grant.get("verification_uri_complete") or grant.get("verification_uri")
        notify(f"To sign in, open {uri} and enter the code {grant.get('user_code')}")
        interval = max(int(grant.get("interval") or 5), 1)
        deadline = time.monotonic() + int(grant.get("expires_in") or 600)
        while time.monotonic() < deadline:
            await sleep(interval)
            status, token = await _json(
                session,
                "POST",
                token_endpoint,
                data={"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": info.client_id},
            )
            if status == 200 and isinstance(token, dict):
                value = token.get("id_token") or token.get("access_token")
                if not value:
                    raise LoginError("the identity provider returned no token")
                return value
            error = _oauth_error(token)
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += 5
                continue
            if error in ("access_denied", "expired_token"):
                raise LoginError(f"sign-in ended: {error}")
            raise LoginError(f"the identity provider refused the token request ({status}: {error})")
    raise LoginError("sign-in timed out before it was approved")


def _oauth_error(body: Any) -> str:
    return str(body.get("error", "unknown_error")) if isinstance(body, dict) else "unreadable response"


def notify_stderr(message: str) -> None:
    # stdout is the token; everything for the human goes to stderr.
    print(message, file=sys.stderr, flush=True)
