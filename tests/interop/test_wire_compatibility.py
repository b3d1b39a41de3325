"""proto/inference/open_inference_grpc.proto against the copy tritonclient ships (Triton's
grpc_service.proto): same package, service, message and field names, numbers and types.

tritonclient never sends typed `contents` nor reads `properties`, so the end-to-end sessions alone
would miss a renumbered field there; this compares the schemas themselves. tritonclient's side is
read in a subprocess (see proto_schema.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scratchnet_api.inference import open_inference_grpc_pb2
from tests.interop.proto_schema import describe

SCHEMA_SCRIPT = Path(__file__).with_name("proto_schema.py")
SERVICE = "inference.GRPCInferenceService"
# In the published specification (kserve/open-inference-protocol), not in Triton's copy: an old
# peer skips it as an unknown field.
SPEC_ONLY_FIELDS = {("inference.ModelMetadataResponse", "properties")}
SPEC_ONLY_MESSAGES = {"inference.ModelMetadataResponse.PropertiesEntry"}


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return describe(open_inference_grpc_pb2.DESCRIPTOR)


@pytest.fixture(scope="module")
def triton() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(SCHEMA_SCRIPT), "tritonclient.grpc.service_pb2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_same_package_and_rpcs(ours: dict[str, Any], triton: dict[str, Any]) -> None:
    assert ours["package"] == triton["package"] == "inference"
    assert list(ours["services"]) == [SERVICE]
    # Triton's service has more RPCs (its extensions); ours must be a subset, each identical.
    for name, method in ours["services"][SERVICE].items():
        assert triton["services"][SERVICE].get(name) == method, name
    assert set(ours["services"][SERVICE]) == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
    }


def test_every_shared_message_has_the_same_fields(
    ours: dict[str, Any], triton: dict[str, Any]
) -> None:
    assert set(ours["messages"]) - set(triton["messages"]) == SPEC_ONLY_MESSAGES
    extra_fields = set()
    for message, fields in ours["messages"].items():
        if message in SPEC_ONLY_MESSAGES:
            continue
        theirs = triton["messages"][message]
        for name, field in fields.items():
            if name in theirs:
                assert field == theirs[name], f"{message}.{name}"
            else:
                # An extra field must not reuse a number the other side gives another field.
                assert field["number"] not in {f["number"] for f in theirs.values()}, name
                extra_fields.add((message, name))
        assert set(theirs) <= set(fields), f"{message} lacks {set(theirs) - set(fields)}"
    assert extra_fields == SPEC_ONLY_FIELDS
