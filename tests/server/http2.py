"""A raw HTTP/2 client (the h2 package) for what no gRPC library lets a test do on purpose: start a
call and never finish sending its message, leave pings unanswered, ping too often, or hold a
connection open without a call.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hyperframe.frame import Frame, GoAwayFrame

__all__ = ["Connection", "Ended"]


@dataclass
class Ended:
    """How the server ended a stream: its gRPC status (None if it reset the stream without one)
    and message, and when, in seconds after the stream was opened."""

    status: int | None
    message: str
    after: float


@dataclass
class Connection:
    """One HTTP/2 connection to a gRPC server, driven by hand."""

    sock: socket.socket
    h2: h2.connection.H2Connection
    opened: dict[int, float] = field(default_factory=dict)
    ended: dict[int, Ended] = field(default_factory=dict)
    goaway: h2.events.ConnectionTerminated | None = None
    goaway_after: float = 0.0
    closed_after: float | None = None
    started: float = field(default_factory=time.monotonic)
    _trailers: dict[int, dict[str, str]] = field(default_factory=dict)
    _unreadable: bool = False

    @classmethod
    def open(cls, host: str, port: int) -> Connection:
        """Connect and exchange the HTTP/2 preface and settings."""
        sock = socket.create_connection((host, port), timeout=10)
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        connection.initiate_connection()
        sock.sendall(connection.data_to_send())
        return cls(sock, connection)

    def start_call(self, path: str, promised: int, sent: bytes = b"") -> int:
        """Open a gRPC call to `path` whose message says it holds `promised` bytes, and send only
        `sent` of them; the stream's id."""
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.h2.send_data(stream, b"\x00" + promised.to_bytes(4, "big") + sent)
        self.flush()
        self.opened[stream] = time.monotonic()
        return stream

    def ping(self) -> None:
        """Send a PING (nothing once the server has said GOAWAY)."""
        if self.goaway is not None or self._unreadable:
            return
        self.h2.ping(time.monotonic_ns().to_bytes(8, "big"))
        self.flush()

    def flush(self) -> None:
        """Send what h2 has queued (including answers to the server's pings)."""
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def read(self, seconds: float, answer_pings: bool = True, until: Any = None) -> None:
        """Read what the server sends for up to `seconds` (less once `until()` holds or the
        connection closes), recording ended streams, GOAWAY and the end of the connection;
        unless `answer_pings`, the server's pings stay unanswered."""
        deadline = time.monotonic() + seconds
        while self.closed_after is None and not (until is not None and until()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return
            except ConnectionError:
                data = b""
            if not data:
                self.closed_after = time.monotonic() - self.started
                return
            if self._unreadable:
                continue  # past what h2 can follow: only the end of the connection matters
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                # h2 reads nothing after a GOAWAY, though the server may still end the calls
                # it accepted before: from here on, wait for the connection to close.
                self._unreadable = True
                self._goaway_in(data)
                continue
            for event in events:
                self._record(event)
            if answer_pings:
                self.flush()

    def close(self) -> None:
        self.sock.close()

    def _goaway_in(self, data: bytes) -> None:
        """Record the GOAWAY frame among raw frames that h2 could not read."""
        offset = 0
        while offset + 9 <= len(data) and self.goaway is None:
            frame, length = Frame.parse_frame_header(memoryview(data[offset : offset + 9]))
            body = data[offset + 9 : offset + 9 + length]
            if isinstance(frame, GoAwayFrame) and len(body) == length:
                frame.parse_body(memoryview(body))
                event = h2.events.ConnectionTerminated()
                event.error_code = frame.error_code
                event.last_stream_id = frame.last_stream_id
                event.additional_data = frame.additional_data
                self._record(event)
            offset += 9 + length

    def _record(self, event: Any) -> None:
        now = time.monotonic()
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            self._trailers.setdefault(event.stream_id, {}).update(dict(event.headers))
        if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            stream = event.stream_id
            if stream in self.ended:
                return
            headers = self._trailers.get(stream, {})
            status = headers.get("grpc-status")
            self.ended[stream] = Ended(
                None if status is None else int(status),
                unquote(headers.get("grpc-message", "")),
                now - self.opened.get(stream, self.started),
            )
        if isinstance(event, h2.events.ConnectionTerminated) and self.goaway is None:
            self.goaway = event
            self.goaway_after = now - self.started
