"""A provider that writes raw HTTP bytes, for answers no well-behaved server library would send:
two Content-Encoding headers, header names or values holding the key, non-latin-1 header bytes,
a 101, streams whose content mimics a terminal event, huge SSE events. The request's `model`
(or, for Gemini, the model in the path) picks the answer; every request is recorded."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any


def _http(status: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"HTTP/1.1 " + status.encode() + b"\r\n" + head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def _sse_chunks(events: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events) + b"0\r\n\r\n"


class RawUpstream:
    def __init__(self, key: str) -> None:
        self.key = key.encode()
        self.requests: list[tuple[bytes, bytes]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append((head, rest))
            target = head.split(b" ", 2)[1].decode()
            try:
                model = json.loads(rest).get("model", "") if rest else ""
            except ValueError:
                model = ""
            if "/models/" in target:
                model = target.split("/models/", 1)[1].split(":")[0]
            answer = self.answers().get(model)
            if answer is None:
                conn.sendall(_http("404 Not Found", [], b""))
            elif callable(answer):
                answer(conn)
            else:
                conn.sendall(answer)
        except OSError:
            pass
        finally:
            conn.close()

    def answers(self) -> dict[str, bytes | Callable[[socket.socket], Any]]:
        key = self.key
        usage = b'"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}'
        json_type = [(b"content-type", b"application/json")]
        gz = gzip.compress(b'{"echo":"' + key + b'",' + usage + b"}")

        def fake_done(conn: socket.socket) -> None:
            start = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            events = [b'data: {"choices":[{"index":0,"delta":{"content":"data: [DONE]\\n\\nmessage_stop response.completed"}}]}\n\n']
            conn.sendall(start + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events))
            time.sleep(3)  # the client leaves here
            rest = [b'data: {"choices":[],' + usage + b"}\n\n", b"data: [DONE]\n\n"]
            conn.sendall(_sse_chunks(rest))

        big_instructions = b"x" * (2 * 1024 * 1024)
        responses_events = [
            b'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n',
            b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r","instructions":"'
            + big_instructions + b'","usage":{"input_tokens":300000,"output_tokens":1000,"total_tokens":301000},'
            b'"metadata":{"usage":"x"}}}\n\n',
        ]
        responses_big = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                         + _sse_chunks(responses_events))
        gemini_array = json.dumps([
            {"candidates": [{"content": {"parts": [{"text": "hi"}]}}], "usageMetadata": {"promptTokenCount": 5}},
            {"candidates": [{"finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 120000, "candidatesTokenCount": 8000}},
        ]).encode()
        return {
            "dup-encoding": _http("200 OK", [*json_type, (b"content-encoding", b"identity"), (b"content-encoding", b"gzip")], gz),
            "list-encoding": _http("200 OK", [*json_type, (b"content-encoding", b"identity, gzip")], gz),
            "key-in-header-name": _http("200 OK", [*json_type, (b"x-ratelimit-" + key, b"1")], b"{" + usage + b"}"),
            "echo-variants": _http("200 OK", json_type, json.dumps({
                "suffix": key[1:].decode(), "escaped": "".join(f"\\u{b:04x}" for b in key),
                "base64": __import__("base64").b64encode(b"k=" + key).decode(), "hex": key.hex(), "upper": key.decode().upper(),
            }).encode().replace(b"\\\\u", b"\\u")),
            "euro-header": _http("200 OK", [*json_type, (b"x-ratelimit-note", "5€".encode()),
                                            (b"content-disposition", b'attachment; filename="a\xff.mp3"')], b"{" + usage + b"}"),
            "switching": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n" + key,
            "fake-done": fake_done,
            "responses-big": responses_big,
            "gemini-array": _http("200 OK", json_type, gemini_array),
        }
