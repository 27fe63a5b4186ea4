"""A local HTTP server that answers whatever the request's query asks for, so tests can make a
workflow's calls fail in every way Cloud Workflows distinguishes.

`GET /answer?status=503&type=application/json&body=...` answers that status, Content-Type and
body; `bytes=N` answers N bytes of text instead of `body`; `delay=S` waits S seconds first.
A test can also script a route: `server.route("POST", "/launch", Answer(429, ...), Answer(200, ...))`
answers its requests with those answers in turn, the last one again and again. Every request is
recorded (method, path, query, headers, JSON body).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Answer:
    """A scripted answer: `body` is sent as JSON unless it is a string."""

    status: int = 200
    body: Any = None
    content_type: str = "application/json"

    def payload(self) -> bytes:
        return (self.body if isinstance(self.body, str) else json.dumps(self.body)).encode()


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
    routes: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def route(self, method: str, path: str, *answers: Answer) -> None:
        """Answers `method path` with `answers` in turn, then the last one for ever."""
        assert answers, "a route needs at least one answer"
        with self._lock:
            self.routes[(method.upper(), path)] = list(answers)

    def seen(self, method: str, path: str) -> list[Seen]:
        """The requests made to `method path`, in order."""
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def _scripted(self, method: str, path: str) -> Answer | None:
        with self._lock:
            answers = self.routes.get((method, path))
            if not answers:
                return None
            return answers.pop(0) if len(answers) > 1 else answers[0]

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
                scripted = server._scripted(self.command, parts.path)
                if scripted is not None:
                    self._send(scripted.status, scripted.content_type, scripted.payload())
                    return
                time.sleep(float(query.get("delay", 0)))
                payload = ("x" * int(query["bytes"])) if "bytes" in query else query.get("body", '{"ok": true}')
                self._send(int(query.get("status", 200)), query.get("type", "application/json"), payload.encode())

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutting down waits for it (0.5 s by default, in every test).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
