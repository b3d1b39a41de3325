"""grpc.health.v1 for the server ("") and each service: SERVING only while the data plane is
ready, NOT_SERVING while the models load and for good once shutdown begins."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

__all__ = ["MAX_WATCHES", "Health"]

MAX_WATCHES = 16
"""Health Watch streams open at once: each holds one of --max-concurrent-rpcs for as long as its
client keeps it, and a probe needs only Check."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """The health servicer (grpc.aio's) and the services it reports."""

    def __init__(self, services: Iterable[str]) -> None:
        """Report `services` (full names) and the server as a whole; call `loading` before the
        server starts, as grpc's servicer says SERVING until told otherwise."""
        self.servicer = _CappedServicer()
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


class _CappedServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """grpc's health servicer, with at most MAX_WATCHES Watch streams open at once."""

    def __init__(self) -> None:
        super().__init__()
        self._watching = 0

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """grpc's Watch, or RESOURCE_EXHAUSTED when MAX_WATCHES streams are open already."""
        if self._watching >= MAX_WATCHES:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{MAX_WATCHES} health Watch streams are open, the most the server keeps: use "
                "Check, or watch again later",
            )
        self._watching += 1
        try:
            await super().Watch(request, context)
        finally:
            self._watching -= 1
