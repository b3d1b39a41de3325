"""Triton's system shared-memory extension from the client side: tensors for a server on the same
host put in POSIX shared memory (/dev/shm) instead of the message.

`Region` creates and maps one shared-memory object; `registered` registers regions with the
server for the duration of a block, and unregisters and removes them after it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc

from clients.credentials import PLAINTEXT, Credentials
from clients.errors import from_rpc_error
from clients.targets import open_channel, parse_targets
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference import open_inference_grpc_pb2_grpc as oip_grpc
from scratchnet.errors import ClientError

__all__ = ["Region", "registered"]

SHM_FOLDER = Path("/dev/shm")


class Region:
    """A shared-memory object of `size` bytes, created for this process, named `name` for the
    server."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.key = f"/scratchnet-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.size = size
        self.path = SHM_FOLDER / self.key[1:]
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise ClientError(
                f"cannot create shared memory {self.path}: {error.strerror} (shared memory needs "
                "a Linux host with /dev/shm, shared with the server)"
            ) from None
        try:
            os.ftruncate(descriptor, max(size, 1))
            self.memory = mmap.mmap(descriptor, max(size, 1))
        finally:
            os.close(descriptor)

    def write(self, data: bytes | memoryview, offset: int = 0) -> None:
        """Copy `data` into the region at `offset`."""
        self.memory[offset : offset + len(data)] = data

    def close(self) -> None:
        """Unmap and remove the object."""
        self.memory.close()
        self.path.unlink(missing_ok=True)


@contextmanager
def registered(
    target: str, regions: Sequence[Region], timeout: float, credentials: Credentials = PLAINTEXT
) -> Iterator[None]:
    """Register `regions` with the server at `target` (with every replica of a list, since
    calls go to any of them; over TLS and with a token if `credentials` say so) for the block;
    then unregister them and remove their objects, whatever happened."""
    try:
        targets = parse_targets(target)
        if regions and targets.replicas is None:
            raise ClientError(
                f"target {target!r}: shared memory needs the servers listed (HOST:PORT,…), "
                "to register its regions with each"
            )
        with contextlib.ExitStack() as registrations:
            for address in targets.addresses:
                registrations.enter_context(
                    _registered_with(address, regions, timeout, credentials)
                )
            yield
    finally:
        for region in regions:
            region.close()


@contextmanager
def _registered_with(
    address: str, regions: Sequence[Region], timeout: float, credentials: Credentials
) -> Iterator[None]:
    """`regions` registered with the one server at `address` for the block."""
    metadata = credentials.metadata
    with open_channel(parse_targets(address), credentials) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        done: list[Region] = []
        try:
            for region in regions:
                request = oip.SystemSharedMemoryRegisterRequest(
                    name=region.name, key=region.key, offset=0, byte_size=region.size
                )
                try:
                    stub.SystemSharedMemoryRegister(request, timeout=timeout, metadata=metadata)
                except grpc.RpcError as error:
                    note = f" (registering shared memory region '{region.name}')"
                    raise from_rpc_error(error, address, timeout, note, credentials) from None
                done.append(region)
            yield
        finally:
            for region in done:
                with contextlib.suppress(grpc.RpcError):  # a server gone has nothing to forget
                    stub.SystemSharedMemoryUnregister(
                        oip.SystemSharedMemoryUnregisterRequest(name=region.name),
                        timeout=timeout,
                        metadata=metadata,
                    )
