"""Real sockets for fault tests: a TCP proxy that can be cut, and a WSGI server in a thread.

Everything listens on 127.0.0.1 only. The proxy sits between Footprint and the shared
PostgreSQL, so a test can take "the database" away without touching the server itself.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.db.utils import load_backend


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``. ``cut()`` drops every open connection and
    closes new ones at once (what a crashed or unreachable server looks like); ``restore()``
    lets connections through again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_cut = False
        self.opened = 0
        self.refused = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.is_cut:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self.opened += 1
                self._pairs.append((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.is_cut = True
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def restore(self) -> None:
        self.is_cut = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class WsgiServer:
    """Footprint's WSGI application served from one thread, as a production worker serves it:
    request_started/finished signals run, so broken connections are closed and persistent ones
    health-checked exactly as Django does outside tests. ``database`` overrides the settings
    of the thread's own database connection (e.g. to reach PostgreSQL through a proxy)."""

    def __init__(self, *, database: dict | None = None) -> None:
        self.database = database or {}
        self.httpd: WSGIServer = make_server(
            "127.0.0.1", 0, WSGIHandler(), handler_class=_QuietHandler
        )
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        default = connections["default"].settings_dict
        settings_dict = {**default, **self.database}
        backend = load_backend(settings_dict["ENGINE"])
        connections["default"] = backend.DatabaseWrapper(settings_dict, "default")
        try:
            self.httpd.serve_forever(poll_interval=0.05)
        finally:
            connections["default"].close()

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str) -> Answer:
        client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            client.request(method, path, body=body, headers=headers)
            response = client.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            client.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.thread.join(timeout=10)
        self.httpd.server_close()
