"""A local HTTP server that answers whatever the request's query asks for, so tests can make a
workflow's calls fail in every way Cloud Workflows distinguishes.

`GET /answer?status=503&type=application/json&body=...` answers that status, Content-Type and
body; `bytes=N` answers N bytes of text instead of `body`; `delay=S` waits S seconds first.
Every request is recorded (method, path, query, headers, JSON body).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class AnsweringServer:
    """Use as a context manager; `url` is `http://127.0.0.1:PORT`."""

    requests: list[Seen] = field(default_factory=list)

    def __enter__(self) -> "AnsweringServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                server.requests.append(Seen(self.command, parts.path, query, dict(self.headers), body))
                time.sleep(float(query.get("delay", 0)))
                payload = ("x" * int(query["bytes"])) if "bytes" in query else query.get("body", '{"ok": true}')
                data = payload.encode()
                self.send_response(int(query.get("status", 200)))
                self.send_header("Content-Type", query.get("type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
