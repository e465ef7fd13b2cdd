"""`aiplane login`: the auth command OpenCode runs, in dev mode and with the OIDC device flow."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.conftest import AIPLANE, clean_env
from tests.doubles.idp import CLIENT_ID, IdpState, build_idp
from tests.doubles.server import ServerThread


@pytest.fixture()
def idp():
    state = IdpState()
    with ServerThread(build_idp(state)) as server:
        state.issuer = server.url
        yield server, state


def _chat(gateway, token: str) -> int:
    return httpx.post(
        gateway.url + "/openai/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "gpt-4o", "messages": []},
    ).status_code


def test_dev_mode_login_prints_a_working_token(gateway):
    result = subprocess.run(
        [AIPLANE, "login", "--gateway", gateway.url, "--user", "frank@example.com"],
        env=gateway.env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    assert _chat(gateway, token) == 200


def test_dev_mode_login_needs_a_user(gateway, tmp_path):
    env = {**gateway.env, "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": str(tmp_path / "none"), "GIT_CONFIG_NOSYSTEM": "1"}
    result = subprocess.run([AIPLANE, "login", "--gateway", gateway.url], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert "--user" in result.stderr and result.stdout == ""


def _oidc_gateway(make_gateway, idp_server, name="oidc-login"):
    return make_gateway(
        name,
        AIPLANE_AUTH__MODE="oidc",
        AIPLANE_AUTH__ISSUER=idp_server.url,
        AIPLANE_AUTH__JWKS_URL=idp_server.url + "/jwks",
        AIPLANE_AUTH__AUDIENCE=CLIENT_ID,
        AIPLANE_AUTH__DEVICE_CLIENT_ID=CLIENT_ID,
    )


def test_oidc_device_flow_login(make_gateway, idp):
    server, state = idp
    gateway = _oidc_gateway(make_gateway, server)
    # The developer's machine has no aiplane settings at all: everything comes from the gateway.
    result = subprocess.run([AIPLANE, "login", "--gateway", gateway.url], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "WDJB-MJHT" in result.stderr and "/activate" in result.stderr
    assert state.polls == 2  # one authorization_pending, then the token
    assert _chat(gateway, result.stdout.strip()) == 200


def test_oidc_device_flow_denied_fails_cleanly(make_gateway, idp):
    server, state = idp
    state.deny = True
    gateway = _oidc_gateway(make_gateway, server, "oidc-denied")
    result = subprocess.run([AIPLANE, "login", "--gateway", gateway.url], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "access_denied" in result.stderr and result.stdout == "" and "Traceback" not in result.stderr


def test_login_against_something_that_is_not_a_gateway(upstream):
    server, _state = upstream
    result = subprocess.run([AIPLANE, "login", "--gateway", server.url], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not an aiplane gateway" in result.stderr
