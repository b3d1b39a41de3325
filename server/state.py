"""The serving state both services share: the loaded model, the limits and the health status."""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2

from server.errors import Unavailable
from server.runtime import ModelRuntime

__all__ = ["ServingState"]

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServingState:
    """What every servicer reads: the runtime (None while loading), limits and readiness.

    It also owns the grpc.health.v1 servicer, so health can only say SERVING while a model is
    loaded and the server is not shutting down.
    """

    def __init__(self, model_name: str, max_batch: int, max_message_bytes: int) -> None:
        self.model_name = model_name
        self.max_batch = max_batch
        self.max_message_bytes = max_message_bytes
        self.runtime: ModelRuntime | None = None
        self.shutting_down = False
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._services = [health.OVERALL_HEALTH]
        self.health.set(health.OVERALL_HEALTH, _NOT_SERVING)

    @property
    def ready(self) -> bool:
        """True while a model is loaded and the server is not shutting down."""
        return self.runtime is not None and not self.shutting_down

    def add_service(self, service: str) -> None:
        """Report `service` (a full name, e.g. "scratchnet.v1.Classifier") in health checks."""
        self._services.append(service)
        self.health.set(service, _SERVING if self.ready else _NOT_SERVING)

    def set_runtime(self, runtime: ModelRuntime) -> None:
        """Serve `runtime`: health turns SERVING for the server and every service."""
        self.runtime = runtime
        for service in self._services:
            self.health.set(service, _SERVING)

    def begin_shutdown(self) -> None:
        """Health turns NOT_SERVING for good and `ready` false."""
        self.shutting_down = True
        self.health.enter_graceful_shutdown()

    def require_runtime(self) -> ModelRuntime:
        """The loaded runtime; Unavailable while the model loads.

        Also during shutdown: gRPC itself refuses new calls then, and calls in flight (a stream's
        next request too) must be able to finish.
        """
        if self.runtime is None:
            raise Unavailable(f"model '{self.model_name}' is still loading, retry shortly")
        return self.runtime
