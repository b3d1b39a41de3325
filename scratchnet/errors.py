"""Every error scratchnet reports, drawn once:

    ScratchnetError             a user's mistake (a file, a flag, a request), or with `failure`
    │                           set a call or job that failed; one line that says what was wrong
    │                           and what was expected
    ├── DataError               a data set that is missing, malformed or inconsistent
    ├── ArtifactError           a trainer artifact that is missing, malformed or inconsistent
    ├── ExportError             an export or parity check that cannot go ahead
    ├── ModelError              a model the server cannot serve (missing, unreadable, refused)
    ├── LaunchError             a server subprocess that did not start or reach a health status
    ├── JobFailed               a batch job (the Ray engine) that failed while running: Ray not
    │                           starting, a worker lost for good, a wrong result, its time up
    ├── RequestError            a request the server cannot answer; scratchnet.status maps each
    │   │                       kind to its gRPC and HTTP status
    │   ├── InvalidArgument     the client's mistake: datatype, shape, bytes, values, batch size
    │   ├── Unauthenticated     no valid bearer token, on a server with --auth-token-file
    │   ├── NotFound            an unknown model name or version
    │   ├── FailedPrecondition  a request the server's mode does not allow (explicit model
    │   │                       load and unload unless --model-control-mode explicit)
    │   ├── ResourceExhausted   more than the server accepts at once: retry later
    │   ├── TooLarge            more than the server accepts at all (RESOURCE_EXHAUSTED, HTTP
    │   │                       413): a smaller request, not a retry
    │   ├── DeadlineExceeded    no answer before the call's (or the server's) deadline
    │   ├── Unavailable         no model ready yet, or the server is shutting down
    │   ├── Unimplemented       something this server does not do (a named model repository)
    │   └── ModelFailed         the model failed on this request inside onnxruntime (INTERNAL,
    │                           with onnxruntime's reason, as Triton's onnxruntime backend)
    └── ClientError             a failed call, as the clients report it; `code` is its gRPC status
                                (None for a mistake found before any call: a malformed target, an
                                unreadable certificate)
        ├── ServerUnavailableError   UNAVAILABLE: nothing listening, or shutting down
        ├── InvalidArgumentError     INVALID_ARGUMENT: inputs the server (or the client) rejects
        ├── NotFoundError            NOT_FOUND: a model name or version the server does not serve
        └── DeadlineExceededError    DEADLINE_EXCEEDED: no answer within the call's timeout

`scratchnet.cli.run_cli` turns any of them into one line on stderr and a non-zero exit: 1 for a
`failure` (a failed call or job), 2 for a mistake; the server's transports turn a RequestError
into its status code and message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: the trainer never needs grpc
    import grpc

__all__ = [
    "ArtifactError",
    "ClientError",
    "DataError",
    "DeadlineExceeded",
    "DeadlineExceededError",
    "ExportError",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidArgumentError",
    "JobFailed",
    "LaunchError",
    "ModelError",
    "NotFound",
    "NotFoundError",
    "RequestError",
    "ResourceExhausted",
    "ScratchnetError",
    "ServerUnavailableError",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "clip",
    "one_line",
]

CLIP = 200
"""The most characters of a client's string (a name, a datatype) a message quotes back."""


def clip(text: str, limit: int = CLIP) -> str:
    """`text` cut to `limit` characters with an ellipsis, so that echoed strings stay short."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Characters that break or hide a line: C0 and C1 controls, and Unicode's line separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (a path or a name with a
    newline or a terminal escape in it), so that a message stays one plain line."""
    return text if text.isprintable() else _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return match[0].encode("unicode_escape").decode("ascii")


class ScratchnetError(Exception):
    """A user mistake, or a `failure`; its message is one line saying what was wrong and what was
    expected."""

    failure = False
    """True when a call or a job failed (a server down or refusing, a deadline, a wrong reply),
    False for a mistake in what the command was given: command lines exit 1 and 2 for them."""


class DataError(ScratchnetError):
    """A data set that cannot be used."""


class ArtifactError(ScratchnetError):
    """A trainer artifact that cannot be used."""


class ExportError(ScratchnetError):
    """An export or a check that cannot go ahead; the message says what and what was expected."""


class ModelError(ScratchnetError):
    """A model file that cannot be served: missing, unreadable or of a form the server refuses."""


class LaunchError(ScratchnetError):
    """A server that exited, or did not listen or reach the health status asked, in time."""


class JobFailed(ScratchnetError):
    """A batch job that failed while it ran, through no fault of its input."""

    failure = True


class RequestError(ScratchnetError):
    """A request that cannot be answered; its class decides the status code (scratchnet.status)."""

    observed = False
    """Set once the server's observers (metrics, access log) have been told of the refusal, so
    that the transport that answers it does not tell them again."""


class InvalidArgument(RequestError):
    """A malformed request: the client must change it."""


class Unauthenticated(RequestError):
    """A request without a valid bearer token, on a server that asks for one."""


class NotFound(RequestError):
    """A request for a model (name or version) this server does not serve."""


class FailedPrecondition(RequestError):
    """A request the server's current mode does not allow; it can work on another server."""


class ResourceExhausted(RequestError):
    """A request beyond the server's limits; retrying later or smaller may succeed."""


class TooLarge(RequestError):
    """A request (or the answer it asks for) beyond a limit no retry can meet: gRPC's
    RESOURCE_EXHAUSTED, as for a message over its size, but HTTP's 413, not 429, so that no
    client or proxy retries it."""


class DeadlineExceeded(RequestError):
    """A request whose deadline passed before its answer was ready."""


class Unavailable(RequestError):
    """The server cannot answer now (loading, shutting down); retrying later may succeed."""


class Unimplemented(RequestError):
    """A request for something this server does not do (Triton's UNSUPPORTED)."""


class ModelFailed(RequestError):
    """The model could not compute this request's answer (onnxruntime failed inside a node, or
    a batch came back with another number of items): whose fault it is, the server cannot tell,
    so it says what failed."""


class ClientError(ScratchnetError):
    """A call to a scratchnet server failed; `code` is its gRPC status code (None if no call)."""

    def __init__(
        self, message: str, code: grpc.StatusCode | None = None, *, failure: bool | None = None
    ) -> None:
        """`failure` defaults to whether there is a `code`: a status means a call was made and
        failed; without one, a mistake was found before any call, unless told otherwise."""
        super().__init__(message)
        self.code = code
        self.failure = code is not None if failure is None else failure


class ServerUnavailableError(ClientError):
    """No server answers at the target (UNAVAILABLE)."""


class InvalidArgumentError(ClientError):
    """The inputs or options were rejected (INVALID_ARGUMENT)."""


class NotFoundError(ClientError):
    """The model (name or version) asked for is not served there (NOT_FOUND)."""


class DeadlineExceededError(ClientError):
    """The call did not finish within its timeout (DEADLINE_EXCEEDED)."""
