"""The spellings in which an echo of a secret key can come back: what the gateway scrubs from every
relayed answer and the reviewer's model client scrubs from what a provider sends."""

from __future__ import annotations

import base64
import functools


@functools.lru_cache(maxsize=64)
def key_spellings(key_text: str) -> tuple[bytes, ...]:
    """The byte strings an echo of a provider key can take: the key, its first and last halves (a
    partial echo such as "sk-abc..."), upper and lower case, hex, UTF-16 both ways, JSON \\u escapes,
    and base64 (standard and URL-safe, at each of the three alignments, the stretch that depends
    on the key alone)."""
    key = key_text.encode()
    if len(key) < 8:
        return ()
    half = max(8, len(key) // 2)
    spellings = {key, key[:half], key[-half:], key.upper(), key.lower(), key.hex().encode(), key.hex().upper().encode(),
                 key_text.encode("utf-16-le"), key_text.encode("utf-16-be"),
                 "".join(f"\\u{b:04x}" for b in key).encode(), "".join(f"\\u{b:04X}" for b in key).encode()}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + key)
            first = -(-offset // 3) * 3
            last = (offset + len(key)) // 3 * 3
            stretch = encoded[first // 3 * 4 : last // 3 * 4]
            if len(stretch) >= 8:
                spellings.add(stretch)
    # Cached: it ran twice per request (about 0.1 ms each) for the handful of keys a gateway holds.
    return tuple(sorted(spellings, key=len, reverse=True))
