"""server.shared_memory in process: regions of /dev/shm objects, read in place, bounds checked."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.errors import InvalidArgument, NotFound, ResourceExhausted
from server import shared_memory
from server.dataplane import DataPlane
from server.repository import ModelRepository
from server.shared_memory import SHM_FOLDER, SharedMemory, requested_region
from server.transports import oip_codec
from server.transports.oip_service import InferenceServicer


@pytest.fixture
def key() -> Iterator[str]:
    name = f"scratchnet-test-{uuid.uuid4().hex[:8]}"
    path = SHM_FOLDER / name
    path.write_bytes(bytes(range(64)))
    yield f"/{name}"
    path.unlink(missing_ok=True)


def test_a_region_is_a_window_read_and_written_in_place(key: str) -> None:
    shared = SharedMemory()
    shared.register("r", key, 16, 32)
    view = shared.view("r", 4, 8, "input 'x'")
    assert bytes(view) == bytes(range(20, 28))
    view[:] = b"\xff" * 8
    assert (SHM_FOLDER / key[1:]).read_bytes()[20:28] == b"\xff" * 8
    assert [(r.name, r.key, r.offset, r.byte_size) for r in shared.status()] == [("r", key, 16, 32)]
    with pytest.raises(InvalidArgument, match="8 bytes at offset 30 do not fit"):
        shared.view("r", 30, 8, "input 'x'")
    with pytest.raises(InvalidArgument, match="is already registered"):
        shared.register("r", key, 0, 8)
    del view
    shared.unregister()
    assert shared.status() == []
    with pytest.raises(NotFound):
        shared.status("r")
    shared.unregister("r")  # not registered: no error, as in Triton
    assert shared.status() == []


@pytest.mark.parametrize("bad", ["/../etc/passwd", "/a/b", "", "/", "/a\x00b"])
def test_only_objects_directly_in_dev_shm_can_be_registered(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="expected the name of an object in /dev/shm"):
        SharedMemory().register("r", bad, 0, 8)


def test_a_symbolic_link_or_a_fifo_in_dev_shm_is_not_a_region(tmp_path: Path) -> None:
    # Outputs are written into a region: a link must not lead the server to another file.
    target = tmp_path / "elsewhere"
    target.write_bytes(bytes(64))
    name = f"scratchnet-test-{uuid.uuid4().hex[:8]}"
    link, fifo = SHM_FOLDER / name, SHM_FOLDER / f"{name}-fifo"
    link.symlink_to(target)
    os.mkfifo(fifo)
    try:
        with pytest.raises(InvalidArgument, match=rf"region '/{name}': a symbolic link$"):
            SharedMemory().register("r", f"/{name}", 0, 8)
        with pytest.raises(InvalidArgument, match="not a shared memory object"):
            SharedMemory().register("r", f"/{name}-fifo", 0, 8)
    finally:
        link.unlink()
        fifo.unlink()


def test_regions_are_capped(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_memory, "MAX_REGIONS", 3)
    shared = SharedMemory()
    for name in "abc":
        shared.register(name, key, 0, 8)
    with pytest.raises(ResourceExhausted, match="3 shared memory regions are registered"):
        shared.register("d", key, 0, 8)
    shared.unregister("a")
    shared.register("d", key, 0, 8)
    shared.unregister()


def test_a_missing_object_a_region_too_large_and_a_disabled_server_are_refused(
    key: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgument, match="unable to open shared memory region"):
        SharedMemory().register("r", "/no-such-object-here", 0, 8)
    with pytest.raises(InvalidArgument, match="do not fit in"):
        SharedMemory().register("r", key, 60, 8)
    with pytest.raises(InvalidArgument, match="--no-shared-memory"):
        SharedMemory(enabled=False).register("r", key, 0, 8)
    assert requested_region({}, "x") is None
    params = {"shared_memory_region": "r", "shared_memory_byte_size": 8}
    assert requested_region(params, "x") == ("r", 0, 8)


def test_an_output_region_that_is_not_registered_is_refused_before_the_model_runs(
    key: str,
) -> None:
    message = oip.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    output = message.outputs.add(name="y")
    output.parameters["shared_memory_region"].string_param = "nowhere"
    output.parameters["shared_memory_byte_size"].int64_param = 8
    received = oip_codec.receive(message.SerializeToString())
    with pytest.raises(InvalidArgument, match=r"output 'y' of model 'm'.*'nowhere'"):
        oip_codec.infer_request(received, SharedMemory())
    shared = SharedMemory()
    shared.register("nowhere", key, 0, 64)
    assert oip_codec.infer_request(received, shared).outputs[0].name == "y"


def test_region_parameters_are_checked_as_triton_checks_them(key: str) -> None:
    # An offset or size without a region, a boolean where an integer goes: refused, not taken
    # as 0 or 1 (an offset of True read shifted bytes and answered OK).
    with pytest.raises(InvalidArgument, match="'shared_memory_byte_size' can not be specified"):
        requested_region({"shared_memory_byte_size": 5}, "x")
    with pytest.raises(InvalidArgument, match="'shared_memory_offset' can not be specified"):
        requested_region({"shared_memory_offset": 0}, "x")
    region = {"shared_memory_region": "r", "shared_memory_byte_size": 8}
    for bad in ({"shared_memory_offset": True}, {"shared_memory_byte_size": True}):
        with pytest.raises(InvalidArgument, match="needs parameters shared_memory_region"):
            requested_region({**region, **bad}, "x")
    # Data in the region and in the message too: which one was meant is unknown.
    shared = SharedMemory()
    shared.register("r", key, 0, 8)
    message = oip.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype="FP32", shape=[2])
    tensor.parameters["shared_memory_region"].string_param = "r"
    tensor.parameters["shared_memory_byte_size"].int64_param = 8
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    received = oip_codec.receive(message.SerializeToString())
    with pytest.raises(InvalidArgument, match="unexpected 'contents' provided when using shared"):
        oip_codec.infer_request(received, shared)


def test_server_metadata_lists_shared_memory_only_when_it_is_on() -> None:
    request, context = oip.ServerMetadataRequest(), cast(Any, None)
    extensions = {}
    for enabled in (True, False):
        servicer = InferenceServicer(
            DataPlane(ModelRepository()), cast(Any, None), SharedMemory(enabled)
        )
        answer = asyncio.run(servicer.ServerMetadata(request, context))
        extensions[enabled] = list(answer.extensions)
    assert "system_shared_memory" in extensions[True]
    assert extensions[False] == [e for e in extensions[True] if e != "system_shared_memory"]
