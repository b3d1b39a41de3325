"""A failed call as the client reports it: the ClientError of its status (scratchnet.status), with
one line that names the server and what went wrong. The classes live in scratchnet.errors."""

from __future__ import annotations

import grpc

from clients.credentials import PLAINTEXT, Credentials
from scratchnet.errors import ClientError
from scratchnet.status import CLIENT_ERRORS

__all__ = ["from_rpc_error"]


def from_rpc_error(
    error: grpc.RpcError,
    target: str,
    timeout: float,
    note: str = "",
    credentials: Credentials | None = None,
) -> ClientError:
    """The ClientError for a call to `target`, made with `timeout` seconds and `credentials`,
    that failed; `note` is appended to the message, then what to try if the credentials may be
    the cause (no token, no TLS, the wrong CA)."""
    if not isinstance(error, grpc.Call):
        return ClientError(f"call to {target} failed: {error}", failure=True)
    code = error.code()
    # gRPC's details can span lines (e.g. for connection errors); CLIs print one line.
    details = " ".join((error.details() or "").split())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer within {timeout:g} s (the timeout: raise it for a busy server)"
    hint = (credentials or PLAINTEXT).hint(code, details)
    message = f"{code.name} from {target}: {details}{note}{f'; {hint}' if hint else ''}"
    return CLIENT_ERRORS.get(code, ClientError)(message, code)
