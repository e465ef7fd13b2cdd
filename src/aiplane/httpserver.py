"""Serving an ASGI app under uvicorn with the limits uvicorn leaves open, before any token is checked.

uvicorn's httptools protocol reads request headers without a size limit or a deadline, and accepts
connections without a cap: one client could hold a hundred megabytes of headers per connection,
or open connections that each trickle a header line every few seconds until the process runs out
of file descriptors. Here every request head is bounded in bytes and in time, and the number of
open connections is capped. Everything else is uvicorn's.
"""

from __future__ import annotations

import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 15.0
MAX_CONNECTIONS = 8192
_431_BODY = b"request header fields too large"
_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(_431_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _431_BODY)
_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools, with a bounded request head: at most MAX_HEAD_BYTES, complete within HEAD_TIMEOUT_SECONDS."""

    def connection_made(self, transport) -> None:  # type: ignore[override]  # noqa: ANN001
        if len(self.connections) >= MAX_CONNECTIONS:
            transport.close()  # before it costs anything: no state, no task
            return
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_timer = None
        self._awaiting_head = True
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self.transport.write(_408)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if getattr(self, "_awaiting_head", False):
            # Bytes before this chunk that did not complete a head: past the limit, refuse unparsed.
            # (A chunk is at most 256 KiB, so a head costs at most the limit plus one chunk.)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()
                return
            self._head_bytes += len(data)
            self._arm_head_timer()
        if self.transport.is_closing():
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._awaiting_head = True
        super().on_message_begin()

    def _refuse_head(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_431)
            self.transport.close()
        self._awaiting_head = False
        self._disarm_head_timer()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head on a kept-alive connection is bounded again, once its first byte arrives
        # (an idle keep-alive connection is uvicorn's keep-alive timeout's business).
        self._awaiting_head = True
        self._head_bytes = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def _raise_file_limit() -> None:
    """Use the hard limit on open files: every connection costs one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def configure(head_timeout: float, max_head_bytes: int, max_connections: int) -> None:
    """Set this process's limits (each worker process of ``run(..., workers=N)`` calls it for itself)."""
    global HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES, MAX_CONNECTIONS
    HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES, MAX_CONNECTIONS = head_timeout, max_head_bytes, max_connections


def run(app: Any, host: str, port: int, head_timeout: float = HEAD_TIMEOUT_SECONDS, max_head_bytes: int = MAX_HEAD_BYTES,
        max_connections: int = MAX_CONNECTIONS, **options: Any) -> None:
    """Serve `app`; with ``workers=N`` (N > 1), `app` is the import string of a factory that each worker
    process calls, and the workers share one listening socket (uvicorn's supervisor restarts dead ones)."""
    import uvicorn

    configure(head_timeout, max_head_bytes, max_connections)
    _raise_file_limit()
    uvicorn.run(app, host=host, port=port, http=BoundedHttpToolsProtocol, log_config=None, access_log=False,
                server_header=False, **options)
