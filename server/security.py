"""Who may call the server: TLS (optionally mutual) on its listeners (server.tls), and bearer
tokens.

Tokens come from a file, one per line (blank lines and `#` comments skipped), read at start and
again at SIGHUP (`TokenFile`, which every listener shares); a call must carry
`authorization: Bearer <token>` matching one of them, compared in constant time. Health checks
(grpc.health.v1's Check) stay open so that probes need no secret; its Watch, a stream that stays
open, needs a token like every other call. Neither tokens nor payloads are ever logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from scratchnet.errors import ScratchnetError
from server.tls import TlsFiles

__all__ = [
    "GRPC_REFUSAL",
    "HTTP_REFUSAL",
    "OPEN_METHODS",
    "Access",
    "TokenAuth",
    "TokenFile",
    "exposure_warning",
    "is_loopback",
    "load_tokens",
    "token_matches",
]

OPEN_METHODS = ("/grpc.health.v1.Health/Check",)
"""Methods callable without a token: probes must not need a secret. Not Health/Watch: each of its
streams holds one of --max-concurrent-rpcs for as long as its client likes."""
_BEARER = "bearer "
HTTP_REFUSAL = "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'"
"""What the HTTP listeners answer a request without a valid token (with 401)."""
GRPC_REFUSAL = "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'"
"""What the gRPC port answers a call without a valid token (with UNAUTHENTICATED)."""

if TYPE_CHECKING:  # grpc's classes are generic in grpc-stubs only
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _AioInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _AioInterceptor = grpc.aio.ServerInterceptor


def load_tokens(path: Path) -> tuple[bytes, ...]:
    """The tokens in `path`; ScratchnetError (one line) if it cannot be read or holds none."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ScratchnetError(f"--auth-token-file {path}: cannot read it ({error})") from None
    stripped = (line.strip() for line in lines)
    tokens = tuple(line.encode() for line in stripped if line and not line.startswith("#"))
    if not tokens:
        raise ScratchnetError(f"--auth-token-file {path} holds no token: expected one per line")
    return tokens


def token_matches(authorization: str, tokens: Sequence[bytes]) -> bool:
    """Whether an `authorization` header value is `Bearer <one of tokens>`, in constant time."""
    if authorization[: len(_BEARER)].lower() != _BEARER:
        return False
    given = authorization[len(_BEARER) :].strip().encode()
    # Compare with every token, whatever matched, so that timing tells nothing.
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token)
    return found


class TokenFile:
    """The tokens of --auth-token-file, shared by every listener, so that one re-read (SIGHUP)
    rotates them everywhere at once."""

    def __init__(self, path: Path) -> None:
        """Read `path`; ScratchnetError (one line) if it cannot be read or holds no token."""
        self.path = path
        self.tokens = load_tokens(path)

    def reload(self) -> int:
        """Read the file again and return how many tokens it holds; on a mistake, raise
        ScratchnetError and keep the tokens held (a bad edit must not lock everyone out)."""
        self.tokens = load_tokens(self.path)
        return len(self.tokens)

    def matches(self, authorization: str) -> bool:
        """Whether an `authorization` value is `Bearer <one of the tokens>` (token_matches)."""
        return token_matches(authorization, self.tokens)

    def admits(self, authorizations: Sequence[str]) -> bool:
        """Whether a request's `authorization` values are one that matches: two are refused,
        as every listener would otherwise have to agree on which of them counts."""
        return len(authorizations) == 1 and self.matches(authorizations[0])


class TokenAuth(_AioInterceptor):
    """Answers calls without a valid bearer token with UNAUTHENTICATED (health excepted), and
    tells `on_refused` (the method's path) of each, for the access log and metrics."""

    def __init__(self, tokens: TokenFile, on_refused: Callable[[str], None] | None = None) -> None:
        self._tokens = tokens
        self._on_refused = on_refused

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        details: grpc.HandlerCallDetails,
    ) -> _Handler:
        """The method's handler if the call carries a valid token, else one that refuses it."""
        handler = await continuation(details)
        if handler is None or details.method in OPEN_METHODS:
            return handler
        given = [
            value.decode(errors="replace") if isinstance(value, bytes) else value
            for key, value in details.invocation_metadata or ()
            if key == "authorization"
        ]
        if self._tokens.admits(given):
            return handler
        if self._on_refused is not None:
            self._on_refused(details.method)
        refusal: _Handler = _REFUSALS[handler.request_streaming, handler.response_streaming]
        return refusal


async def _refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, GRPC_REFUSAL)


async def _refuse_streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await _refuse(request, context)
    yield  # an async generator, as grpc wants for a streaming response


# No deserializer: a refused request's bytes are never parsed.
_REFUSALS: dict[tuple[bool, bool], Any] = {
    (False, False): grpc.unary_unary_rpc_method_handler(_refuse),
    (False, True): grpc.unary_stream_rpc_method_handler(_refuse_streaming),
    (True, False): grpc.stream_unary_rpc_method_handler(_refuse),
    (True, True): grpc.stream_stream_rpc_method_handler(_refuse_streaming),
}


@dataclass(frozen=True)
class Access:
    """Who may reach the listeners: their TLS files and bearer tokens (None where not asked
    for), one of each shared by every listener and read again together at SIGHUP."""

    tls: TlsFiles | None = None
    tokens: TokenFile | None = None


def exposure_warning(host: str, tls: bool) -> str | None:
    """The warning to log when listening on `host` exposes plaintext traffic to the network."""
    if tls or is_loopback(host):
        return None
    return (
        f"listening on {host} without TLS: anyone on the network can read the traffic (and, "
        "without --auth-token-file, call the server); give --tls-cert and --tls-key"
    )


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name) is reachable from this machine only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
