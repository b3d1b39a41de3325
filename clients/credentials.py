"""What a client shows the server and how it checks it: TLS (trusting a CA; with a client
certificate, mutual TLS) and a bearer token.

The command lines take them as --tls-ca FILE, --tls-cert FILE, --tls-key FILE and --token-file
FILE (or the variable SCRATCHNET_TOKEN), the names the Node.js and C++ clients use; the library
as `Client(target, tls_ca=..., tls_cert=..., tls_key=..., token=...)`. Files are read and checked
before any connection, so that a wrong file is named as such rather than showing up as a failed
handshake; the token is sent as `authorization: Bearer <token>` and never appears in a message.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from scratchnet.errors import ClientError

__all__ = ["PLAINTEXT", "TOKEN_VARIABLE", "Credentials", "Pem", "read_token"]

TOKEN_VARIABLE = "SCRATCHNET_TOKEN"
"""Where the command lines find the token when no --token-file is given."""
Pem = str | os.PathLike[str] | bytes
"""A PEM file's path, or its content."""
# What an HTTP/2 header value may hold without spaces: visible ASCII.
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Credentials:
    """TLS material (PEM bytes) and a bearer token; all None: plaintext, no token."""

    tls_ca: bytes | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls,
        tls_ca: Pem | None = None,
        tls_cert: Pem | None = None,
        tls_key: Pem | None = None,
        token: str | None = None,
    ) -> Credentials:
        """Credentials from PEM files or bytes and a token; ClientError naming what is wrong."""
        if (tls_cert is None) != (tls_key is None):
            raise ClientError("--tls-cert and --tls-key go together: give both or neither")
        if token is not None:
            token = _checked_token(token, "the token")
        credentials = cls(
            _certificates("--tls-ca", tls_ca),
            _certificates("--tls-cert", tls_cert),
            _pem("--tls-key", tls_key),
            token,
        )
        if tls_cert is not None and tls_key is not None:
            _check_key(tls_cert, tls_key)
        return credentials

    @property
    def tls(self) -> bool:
        """Whether calls go over TLS (a CA to trust or a client certificate was given)."""
        return self.tls_ca is not None or self.tls_cert is not None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call carries: the bearer token, if any."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """gRPC's TLS credentials: trust `tls_ca` (the system's CAs if None), present
        `tls_cert` when given."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.tls_ca,
            private_key=self.tls_key,
            certificate_chain=self.tls_cert,
        )

    def hint(self, code: grpc.StatusCode, details: str) -> str:
        """What to try when a call failed with `code` and `details` for a reason these
        credentials may explain; "" otherwise."""
        if code == grpc.StatusCode.UNAUTHENTICATED:
            if self.token is None:
                return f"give --token-file FILE (or set {TOKEN_VARIABLE}) with a token it accepts"
            return f"the token sent (--token-file or {TOKEN_VARIABLE}) was refused"
        if code != grpc.StatusCode.UNAVAILABLE:
            return ""
        if not self.tls:
            if "Socket closed" in details or "handshake" in details.lower():
                return (
                    "if the server serves TLS, give --tls-ca FILE (the CA that signed its "
                    "certificate), and --tls-cert FILE --tls-key FILE if it asks for a client one"
                )
            return ""
        if "WRONG_VERSION_NUMBER" in details:
            return "the server does not seem to serve TLS: leave out --tls-ca and --tls-cert"
        if "CERTIFICATE_VERIFY_FAILED" in details:
            # OpenSSL's reason follows the code: a date is not a signer.
            if "certificate has expired" in details or "not yet valid" in details:
                return (
                    "the server's certificate is outside its validity dates: renew it (or "
                    "check this machine's clock)"
                )
            return "the server's certificate is not signed by the CA of --tls-ca"
        if "Socket closed" in details or "handshake" in details.lower():
            return (
                "the server refused the TLS connection: it may require a client certificate "
                "signed by a CA it trusts (--tls-cert FILE --tls-key FILE)"
            )
        return ""


PLAINTEXT = Credentials()
"""No TLS, no token."""


def read_token(file: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> str | None:
    """The bearer token in `file`, else in SCRATCHNET_TOKEN, else None; ClientError (naming the
    file or the variable, never the token) if it cannot be read or is not one token."""
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as error:
            raise ClientError(f"--token-file {file}: cannot read it ({error.strerror})") from None
        except UnicodeDecodeError:
            raise ClientError(f"--token-file {file}: cannot read it (not UTF-8 text)") from None
        return _checked_token(text, f"--token-file {file}")
    text = environ.get(TOKEN_VARIABLE, "")
    return _checked_token(text, TOKEN_VARIABLE) if text.strip() else None


def _checked_token(text: str, source: str) -> str:
    token = text.strip()
    if not token:
        raise ClientError(f"{source} holds no token: expected one token on one line")
    if not _TOKEN.fullmatch(token):
        raise ClientError(
            f"{source}: expected one token on one line, of visible ASCII characters without spaces"
        )
    return token


def _where(flag: str, value: Pem) -> str:
    return f"{flag}: the bytes given" if isinstance(value, bytes) else f"{flag} {os.fspath(value)}"


def _pem(flag: str, value: Pem | None) -> bytes | None:
    if value is None:
        return None
    where = _where(flag, value)
    if isinstance(value, bytes):
        data = value
    else:
        try:
            data = Path(value).read_bytes()
        except OSError as error:
            raise ClientError(f"{where}: cannot read it ({error.strerror})") from None
    if b"-----BEGIN" not in data:
        raise ClientError(f"{where}: not a PEM file (no -----BEGIN line)")
    return data


def _certificates(flag: str, value: Pem | None) -> bytes | None:
    """The PEM certificates of `value`, parsed now: gRPC parses them only when it connects, and
    then logs OpenSSL's errors and reports a failed handshake, as if the server were at fault."""
    data = _pem(flag, value)
    if data is None or value is None:
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError):
        raise ClientError(
            f"{_where(flag, value)}: not a readable certificate, expected PEM "
            "-----BEGIN CERTIFICATE----- blocks"
        ) from None
    return data


def _check_key(tls_cert: Pem, tls_key: Pem) -> None:
    """Parse the key of --tls-key and match it with --tls-cert's certificate, when both are files
    (Python's ssl reads keys from files only: key bytes are left to gRPC)."""
    if isinstance(tls_cert, bytes) or isinstance(tls_key, bytes):
        return
    try:
        # The password callback stops OpenSSL prompting on the terminal for an encrypted key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            tls_cert, tls_key, password=lambda: b""
        )
    except ssl.SSLError as error:
        where = _where("--tls-key", tls_key)
        if error.reason == "KEY_VALUES_MISMATCH":
            raise ClientError(
                f"{where}: not the private key of the certificate in "
                f"{_where('--tls-cert', tls_cert)}, expected that certificate's key"
            ) from None
        raise ClientError(
            f"{where}: not a readable private key, expected an unencrypted PEM private key"
        ) from None
