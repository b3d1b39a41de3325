"""grpc.health.v1 for the server ("") and each service: SERVING only while the data plane is
ready, NOT_SERVING while the models load and for good once shutdown begins."""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health, health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

__all__ = ["Health"]

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """The health servicer (grpc.aio's) and the services it reports."""

    def __init__(self, services: Iterable[str]) -> None:
        """Report `services` (full names) and the server as a whole; call `loading` before the
        server starts, as grpc's servicer says SERVING until told otherwise."""
        self.servicer = health_aio.HealthServicer()
        self._services = [health.OVERALL_HEALTH, *services]

    async def loading(self) -> None:
        """Everything NOT_SERVING while the models load."""
        await self._set(_NOT_SERVING)

    async def serving(self) -> None:
        """Everything turns SERVING."""
        await self._set(_SERVING)

    async def shutdown(self) -> None:
        """Everything turns NOT_SERVING, for good."""
        await self.servicer.enter_graceful_shutdown()

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in self._services:
            await self.servicer.set(service, status)
