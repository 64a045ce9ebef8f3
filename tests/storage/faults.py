"""An object store that goes away and comes back: a TCP relay in front of moto's S3 server.

The relay is the endpoint the clients see (`AWS_ENDPOINT_URL`). `cut()` resets every open
connection (SO_LINGER 0: the client gets ECONNRESET mid-request) and stops listening (new
connections are refused), as when the store's host or the network goes away; `restore()`
listens again on the same port. moto stays up behind it, so the bucket keeps what was written
before the cut, as a real store does. `cut_on(marker)` cuts when a request whose first line
contains `marker` passes (e.g. `PUT /bucket/root/tiles.tmp-`): the fault lands at the same point
of a step on every run. `throttle_on(marker)` answers that request and every later one with
S3's `503 SlowDown`, as a store that throttles does, until `throttle_on(None)`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

METHODS = (b"GET ", b"PUT ", b"POST", b"HEAD", b"DELE")
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class Relay:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.host = host
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.up = True
        self.marker: bytes | None = None
        self.nth = self.seen = 0
        self.cuts = 0
        self.requests: list[bytes] = []
        self.throttle_marker: bytes | None = None
        self.throttling = False
        self.throttled = 0
        self.hijacked: set[int] = set()
        self._accepting = threading.Thread(target=self._accept, args=(self.listener,), daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, port))
        s.listen(64)
        return s

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            with self.lock:
                if not self.up:
                    _reset(client)
                    continue
                if self.throttling:
                    threading.Thread(
                        target=self._slow_down, args=(client, b""), daemon=True
                    ).start()
                    continue
                try:
                    server = socket.create_connection(self.upstream)
                except OSError:
                    _reset(client)
                    continue
                self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if requests:
                    for line in data.split(b"\r\n"):
                        if line[:4] in METHODS:
                            self.requests.append(line)
                            if self.marker is not None and self.marker in line:
                                self.seen += 1
                                if self.seen >= self.nth:
                                    self.marker = None
                                    self.cut()
                                    return
                            if self.throttle_marker is not None and self.throttle_marker in line:
                                self.throttling = True
                    if self.throttling and data[:4] in METHODS:
                        self.hijacked.add(id(src))
                        _reset(dst)
                        self._slow_down(src, data)
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if id(dst) not in self.hijacked:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """Reset every connection and refuse new ones, until `restore()`."""
        with self.lock:
            self.up = False
            self.cuts += 1
            conns, self.conns = self.conns, []
            with contextlib.suppress(OSError):
                self.listener.close()
        for c in conns:
            _reset(c)

    def cut_on(self, marker: str, nth: int = 1) -> None:
        """Cut when the `nth` request line containing `marker` arrives (not relayed)."""
        self.marker = marker.encode()
        self.nth, self.seen = nth, 0

    def throttle_on(self, marker: str | None) -> None:
        """Answer `503 SlowDown` from the request whose first line contains `marker` on, until
        `throttle_on(None)`."""
        self.throttle_marker = None if marker is None else marker.encode()
        self.throttling = False

    def _slow_down(self, client: socket.socket, data: bytes) -> None:
        """Read one request (its body too, unless it waits for `100 Continue`), answer it with
        `503 SlowDown` and close the connection."""
        try:
            client.settimeout(5)
            while b"\r\n\r\n" not in data:
                more = client.recv(65536)
                if not more:
                    return
                data += more
            head, body = data.split(b"\r\n\r\n", 1)
            headers = head.lower()
            length = 0
            for line in headers.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if b"expect: 100-continue" not in headers:
                while len(body) < length:
                    more = client.recv(65536)
                    if not more:
                        break
                    body += more
            self.throttled += 1
            client.sendall(
                b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(SLOW_DOWN)}\r\n".encode()
                + b"Connection: close\r\n\r\n"
                + (b"" if head.startswith(b"HEAD") else SLOW_DOWN)  # a HEAD answer has no body
            )
            client.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and client.recv(65536):
                pass
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def restore(self) -> None:
        with self.lock:
            if self.up:
                return
            self.listener = self._listen(self.port)
            self.up = True
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        self.cut()


def _reset(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
