"""A fault-injecting HTTP proxy for tests: forwards every request to an upstream S3 endpoint (moto)
and, by rule, answers instead with 503 SlowDown, 500 InternalError, or a TCP reset.

Rules are ``(predicate, fault, times)``: the first ``times`` requests matching ``predicate``
(``method, path`` -> bool; ``times=None``: every one) get ``fault``. Every request and every
injected fault is counted (``proxy.log``), so a test can assert that retries happened and how
many attempts a persistent fault took.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b'<Message>Please reduce your request rate.</Message></Error>')
INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b'<Message>We encountered an internal error. Please try again.</Message></Error>')


class FaultProxy:
    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.upstream = (u.hostname, u.port)
        self.rules: list[list] = []
        self.log: list[tuple[str, str, str]] = []  # (method, path, fault or "ok")
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                fault = proxy._fault(self.command, self.path)
                with proxy.lock:
                    proxy.log.append((self.command, self.path, fault or "ok"))
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault in ("503", "500"):
                    payload = SLOW_DOWN if fault == "503" else INTERNAL
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":  # a HEAD answer has no body
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status, r.reason)
                head = self.command == "HEAD"  # keeps upstream's Content-Length: the size
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding") and (
                            head or k.lower() != "content-length"):
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, predicate, fault: str, times: int | None = 1) -> None:
        with self.lock:
            self.rules.append([predicate, fault, times])

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.log.clear()

    def _fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for rule in self.rules:
                pred, fault, times = rule
                if (times is None or times > 0) and pred(method, path):
                    if times is not None:
                        rule[2] -= 1
                    return fault
        return None

    def faults(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, _, f in self.log:
            out[f] = out.get(f, 0) + 1
        return out

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *a) -> None:
        self.server.shutdown()
        self.server.server_close()
