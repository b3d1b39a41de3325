"""grpc.health.v1 for the server ("") and each service: SERVING only while the data plane is
ready, NOT_SERVING while the models load and for good once shutdown begins."""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health, health_pb2

__all__ = ["Health"]

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """The health servicer and the services it reports."""

    def __init__(self, services: Iterable[str]) -> None:
        """Report `services` (full names) and the server as a whole, NOT_SERVING for now."""
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._services = [health.OVERALL_HEALTH, *services]
        self._set(_NOT_SERVING)

    def serving(self) -> None:
        """Everything turns SERVING."""
        self._set(_SERVING)

    def shutdown(self) -> None:
        """Everything turns NOT_SERVING, for good."""
        self.servicer.enter_graceful_shutdown()

    def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in self._services:
            self.servicer.set(service, status)
