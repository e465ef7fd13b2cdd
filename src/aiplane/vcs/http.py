"""A REST client for code hosts: pagination by Link header, rate limits and clear errors.

Tokens go in headers only and never into messages; a `next` link to another host is refused so a
token is never sent somewhere else.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from aiplane.vcs.model import VcsError

_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([a-z]+)"?')
MAX_PAGES = 100


def next_link(header: str | None) -> str | None:
    for url, rel in _LINK.findall(header or ""):
        if rel == "next":
            return url
    return None


class ApiClient:
    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        host_name: str,
        secret: str,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_wait_seconds: float = 60.0,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host_name = host_name
        self._secret = secret
        self._origin = urlsplit(self.base_url)[:2]
        self.max_retries = max_retries
        self.max_wait_seconds = max_wait_seconds
        self.backoff_seconds = backoff_seconds
        self._client = httpx.Client(headers={"user-agent": "aiplane-review", **headers}, timeout=timeout)
        # Listings cut at MAX_PAGES, for the review to say so.
        self.truncated: list[str] = []

    def close(self) -> None:
        self._client.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                ok: tuple[int, ...] = ()) -> httpx.Response:
        """One call, retried on rate limits (honouring Retry-After) and on 5xx; `ok` lists extra
        statuses the caller handles itself."""
        url = self.url(path)
        where = f"{self.host_name} {method} {urlsplit(url).path}"
        attempt = 0
        while True:
            try:
                response = self._client.request(method, url, json=json, params=params)
            except httpx.TimeoutException:
                raise VcsError(f"{where}: timed out") from None
            except httpx.HTTPError as exc:
                raise VcsError(f"{where}: cannot connect ({exc.__class__.__name__})") from None
            status = response.status_code
            if status < 400 or status in ok:
                return response
            wait = self._rate_limit_wait(response)
            if wait is None and status >= 500:
                wait = self.backoff_seconds * (2**attempt)
            if wait is not None and attempt < self.max_retries:
                if wait > self.max_wait_seconds:
                    raise VcsError(f"{where}: rate limited for {wait:.0f} s, longer than the {self.max_wait_seconds:.0f} s we wait", status)
                time.sleep(wait)
                attempt += 1
                continue
            raise VcsError(self._describe(where, response), status)

    def _rate_limit_wait(self, response: httpx.Response) -> float | None:
        status, headers = response.status_code, response.headers
        limited = status == 429 or (status == 403 and (headers.get("retry-after") or headers.get("x-ratelimit-remaining") == "0"))
        if not limited:
            return None
        retry_after = headers.get("retry-after")
        if retry_after and retry_after.strip().isdigit():
            return float(retry_after)
        reset = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
        if reset and reset.strip().isdigit():
            value = float(reset)
            # GitHub sends an epoch time, GitLab's RateLimit-Reset may be seconds from now.
            return max(value - time.time(), 0.0) if value > 1e9 else value
        return 60.0

    def _describe(self, where: str, response: httpx.Response) -> str:
        status = response.status_code
        detail = ""
        try:
            data = response.json()
            detail = (data.get("message") or data.get("error") or "") if isinstance(data, dict) else ""
            if isinstance(detail, (list, dict)):
                detail = str(detail)
        except ValueError:
            pass
        hint = {
            401: "the token was rejected (expired or wrong)",
            403: "the token lacks a permission this call needs",
            404: "not found, or the token cannot see it",
            422: "the host refused the request",
            429: "rate limited",
        }.get(status, "server error" if status >= 500 else "request failed")
        text = f"{where}: HTTP {status}, {hint}" + (f" ({str(detail)[:200]})" if detail else "")
        return text.replace(self._secret, "***") if self._secret else text

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise VcsError(f"{self.host_name} {method} {urlsplit(self.url(path)).path}: the answer is not JSON") from None

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, following `Link: <...>; rel="next"` within this host."""
        url: str | None = self.url(path)
        query = {"per_page": 100, **(params or {})}
        for _page in range(MAX_PAGES):
            assert url is not None
            response = self.request("GET", url, params=query)
            items = response.json()
            if not isinstance(items, list):
                raise VcsError(f"{self.host_name} GET {urlsplit(url).path}: expected a list")
            yield from items
            url = next_link(response.headers.get("link"))
            if url is None:
                return
            if urlsplit(url)[:2] != self._origin:
                raise VcsError(f"{self.host_name}: refusing a pagination link to another host")
            query = None  # the next link carries its own query
        # Anyone who may comment can make a listing long; a review reads the first pages and goes on.
        self.truncated.append(f"{urlsplit(self.url(path)).path} (first {MAX_PAGES * 100} items)")
