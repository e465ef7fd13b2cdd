"""Inflating a hostile peer's gzip or deflate body in bounded steps (a small chunk can inflate a
thousandfold): the gateway's relay and the reviewer's model client both read provider answers so."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

INFLATE_STEP = 256 * 1024


class CorruptBody(Exception):
    """The compressed body does not inflate."""


class UnsupportedEncoding(Exception):
    pass


class Inflater:
    """Inflates gzip/deflate bodies in bounded steps (a small chunk can inflate a thousandfold)."""

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, auto-detected
        else:
            raise UnsupportedEncoding(encoding)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._z is None:
            yield chunk
            return
        try:
            data = self._z.decompress(chunk, INFLATE_STEP)
            while True:
                if data:
                    yield data
                if not self._z.unconsumed_tail:
                    return
                data = self._z.decompress(self._z.unconsumed_tail, INFLATE_STEP)
        except zlib.error as exc:
            raise CorruptBody("the compressed body is corrupt") from exc
