"""TLS on every listener from one set of files (--tls-cert, --tls-key, optionally
--tls-client-ca for mutual TLS), read at start and again at SIGHUP.

One `TlsFiles` is shared by the gRPC, HTTP and metrics listeners, so that a renewed certificate
(cert-manager, certbot) reaches all three at once: connections opened after the reload shake
hands with the new files, open ones keep theirs. gRPC asks for the files through its dynamic
credentials (its fetcher runs before each new connection's handshake); the HTTP listeners' one
SSLContext hands each handshake to the context of the files read last (its SNI callback runs on
every ClientHello, with or without a server name). A reload whose files cannot be read or do not
go together keeps the files held: a half-written renewal must not take TLS down.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from scratchnet.errors import ScratchnetError

__all__ = ["TlsFiles"]


@dataclass(frozen=True)
class _Read:
    """One reading of the files: their bytes, for gRPC, and a context made of them, for HTTP."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext


class TlsFiles:
    """The TLS files of the listeners; `reload()` renews them on every listener at once."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        """Read the files; ScratchnetError (one line) naming what is wrong with them."""
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._read = self._read_files()
        self._given_to_grpc = self._read  # what gRPC holds (grpc_credentials, _fetch_for_grpc)
        self._front = self._read.context  # the context the HTTP listeners are given
        self._front.sni_callback = self._switch

    def reload(self) -> None:
        """Read the files again; on a mistake, ScratchnetError and the files held are kept."""
        read = self._read_files()
        with self._lock:
            self._read = read

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for the gRPC port that follow `reload()`."""
        with self._lock:
            read = self._given_to_grpc = self._read
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(read),
            self._fetch_for_grpc,
            require_client_authentication=self.client_ca is not None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The SSLContext for an HTTP listener, which follows `reload()`."""
        return self._front

    def _fetch_for_grpc(self) -> Any:
        """gRPC's fetcher, run before each new connection's handshake: the files read last, if
        gRPC has not had them yet, else None (no change)."""
        with self._lock:
            read = self._read
            if read is self._given_to_grpc:
                return None
            self._given_to_grpc = read
        return self._grpc_configuration(read)

    @staticmethod
    def _grpc_configuration(read: _Read) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(read.key, read.cert)], root_certificates=read.client_ca
        )

    def _switch(self, connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        """The SNI callback of the HTTP listeners' context: hand the handshake to the context
        of the files read last."""
        del server_name, context
        read = self._read
        if read.context is not self._front:
            connection.context = read.context

    def _read_files(self) -> _Read:
        read = self._context_of(self._bytes())
        # ssl reads the files by name, gRPC takes their bytes: both must be the same files.
        if self._bytes() != (read.cert, read.key, read.client_ca):
            raise ScratchnetError(
                f"the TLS files --tls-cert {self.cert}, --tls-key {self.key} changed while "
                "they were read: read them again when they are written (SIGHUP)"
            )
        return read

    def _bytes(self) -> tuple[bytes, bytes, bytes | None]:
        cert = _pem("--tls-cert", self.cert)
        key = _pem("--tls-key", self.key)
        client_ca = None if self.client_ca is None else _pem("--tls-client-ca", self.client_ca)
        return cert, key, client_ca

    def _context_of(self, files: tuple[bytes, bytes, bytes | None]) -> _Read:
        """The files' context, made from the files the bytes were read from."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
            if self.client_ca is not None:
                context.load_verify_locations(cafile=self.client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as error:
            ca = "" if self.client_ca is None else f", --tls-client-ca {self.client_ca}"
            raise ScratchnetError(
                f"cannot use the TLS files --tls-cert {self.cert}, --tls-key {self.key}{ca} "
                f"({error})"
            ) from None
        return _Read(*files, context)


def _pem(flag: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ScratchnetError(f"{flag} {path}: cannot read it ({error.strerror})") from None
    if b"-----BEGIN" not in data:
        raise ScratchnetError(f"{flag} {path}: not a PEM file (no -----BEGIN line)")
    return data
