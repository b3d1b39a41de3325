"""Errors of the Python client, one class per gRPC status a caller should handle differently.

    ScratchnetError                  (trainer.errors) a user's mistake, shown as one line by CLIs
    └── ClientError                  any failed call to a scratchnet server, or a bad target
        ├── ServerUnavailableError   UNAVAILABLE: nothing listening, or the server is shutting down
        ├── InvalidArgumentError     INVALID_ARGUMENT: images the server (or the client) rejects
        └── DeadlineExceededError    DEADLINE_EXCEEDED: no answer within the call's timeout

Other status codes (RESOURCE_EXHAUSTED, UNIMPLEMENTED, …) raise ClientError itself; `code` holds
the gRPC status in every case (None for mistakes caught before any call).
"""

from __future__ import annotations

import grpc

from trainer.errors import ScratchnetError

__all__ = [
    "ClientError",
    "DeadlineExceededError",
    "InvalidArgumentError",
    "ServerUnavailableError",
    "from_rpc_error",
]


class ClientError(ScratchnetError):
    """A call to a scratchnet server failed; `code` is its gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class ServerUnavailableError(ClientError):
    """No server answers at the target (UNAVAILABLE)."""


class InvalidArgumentError(ClientError):
    """The images or options were rejected (INVALID_ARGUMENT)."""


class DeadlineExceededError(ClientError):
    """The call did not finish within its timeout (DEADLINE_EXCEEDED)."""


# The status codes a caller may want to tell apart; any other code raises ClientError itself.
_CLASSES: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.UNAVAILABLE: ServerUnavailableError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(
    error: grpc.RpcError, target: str, timeout: float, note: str = ""
) -> ClientError:
    """The ClientError for a call to `target`, made with `timeout` seconds, that failed; `note`
    is appended to the message."""
    if not isinstance(error, grpc.Call):
        return ClientError(f"call to {target} failed: {error}")
    code = error.code()
    # gRPC's details can span lines (e.g. for connection errors); CLIs print one line.
    details = " ".join((error.details() or "").split())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer within {timeout:g} s (the timeout: raise it for a busy server)"
    message = f"{code.name} from {target}: {details}{note}"
    return _CLASSES.get(code, ClientError)(message, code)
