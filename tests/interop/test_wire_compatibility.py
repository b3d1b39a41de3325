"""proto/inference/open_inference_grpc.proto and model_config.proto against the copies tritonclient
ships (Triton's grpc_service.proto and model_config.proto): same package, service, message, field
and enum names, numbers and types.

tritonclient never sends typed `contents` nor reads `properties`, so the end-to-end sessions alone
would miss a renumbered field there; this compares the schemas themselves. tritonclient's side is
read in a subprocess (see proto_schema.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from scratchnet.api.inference import model_config_pb2, open_inference_grpc_pb2
from tests.interop.proto_schema import describe

SCHEMA_SCRIPT = Path(__file__).with_name("proto_schema.py")
SERVICE = "inference.GRPCInferenceService"
# The RPCs of the Open Inference Protocol's specification, plus Triton's streaming extension.
CORE_RPCS = {
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelStreamInfer",
}
# Triton's other protocol extensions.
EXTENSION_RPCS = {
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
}
# In the published specification (kserve/open-inference-protocol), not in Triton's copy: an old
# peer skips it as an unknown field.
SPEC_ONLY_FIELDS = {("inference.ModelMetadataResponse", "properties")}
SPEC_ONLY_MESSAGES = {"inference.ModelMetadataResponse.PropertiesEntry"}


def _tritonclient(script: list[str], stdin: bytes = b"") -> bytes:
    """The output of a Python script run in a subprocess, where tritonclient may be imported."""
    result = subprocess.run(
        [sys.executable, *script], input=stdin, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def _triton_schema(module: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_tritonclient([str(SCHEMA_SCRIPT), module]))
    return schema


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return describe(open_inference_grpc_pb2.DESCRIPTOR)


@pytest.fixture(scope="module")
def triton() -> dict[str, Any]:
    return _triton_schema("tritonclient.grpc.service_pb2")


@pytest.fixture(scope="module")
def ours_config() -> dict[str, Any]:
    return describe(model_config_pb2.DESCRIPTOR)


@pytest.fixture(scope="module")
def triton_config() -> dict[str, Any]:
    return _triton_schema("tritonclient.grpc.model_config_pb2")


def test_same_package_and_rpcs(ours: dict[str, Any], triton: dict[str, Any]) -> None:
    assert ours["package"] == triton["package"] == "inference"
    assert list(ours["services"]) == [SERVICE]
    # Every RPC of Triton's service, none more, each with the same types and streaming.
    assert set(ours["services"][SERVICE]) == CORE_RPCS | EXTENSION_RPCS
    assert ours["services"] == triton["services"]


def test_the_service_imports_the_model_configuration(
    ours: dict[str, Any], triton: dict[str, Any]
) -> None:
    # Both import one other file, of package `inference`: model_config.proto (whose file name
    # differs: ours is compiled as scratchnet/api/inference/model_config.proto).
    assert ours["dependencies"] == triton["dependencies"] == ["inference"]
    assert [dependency.name for dependency in open_inference_grpc_pb2.DESCRIPTOR.dependencies] == [
        model_config_pb2.DESCRIPTOR.name
    ]
    config = ours["messages"]["inference.ModelConfigResponse"]["config"]
    assert config["message"] == model_config_pb2.ModelConfig.DESCRIPTOR.full_name


def test_every_shared_message_has_the_same_fields(
    ours: dict[str, Any], triton: dict[str, Any]
) -> None:
    assert set(ours["messages"]) - set(triton["messages"]) == SPEC_ONLY_MESSAGES
    # Every message of Triton's file has its counterpart here (checked field by field below).
    assert set(triton["messages"]) <= set(ours["messages"])
    assert ours["enums"] == triton["enums"] == {}
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


def test_the_model_configuration_is_the_same(
    ours_config: dict[str, Any], triton_config: dict[str, Any]
) -> None:
    assert ours_config["package"] == triton_config["package"] == "inference"
    assert ours_config["dependencies"] == triton_config["dependencies"] == []
    assert ours_config["services"] == triton_config["services"] == {}
    # Compared message by message and enum by enum first, so a failure names the culprit.
    assert set(ours_config["messages"]) == set(triton_config["messages"])
    for message, fields in ours_config["messages"].items():
        assert fields == triton_config["messages"][message], message
    assert set(ours_config["enums"]) == set(triton_config["enums"])
    for enum, values in ours_config["enums"].items():
        assert values == triton_config["enums"][enum], enum
    assert ours_config == triton_config


# Reads a serialized ModelConfig from stdin with tritonclient's ModelConfig; writes it back as JSON:
# in text format, unknown fields included, and serialized again (deterministically, hex-encoded).
_TRITON_ROUND_TRIP = """
import json, sys
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
config = model_config_pb2.ModelConfig.FromString(sys.stdin.buffer.read())
json.dump({
    "text": text_format.MessageToString(config, print_unknown_fields=True),
    "data": config.SerializeToString(deterministic=True).hex(),
}, sys.stdout)
"""

# Configurations that, together, set every field of the schema at least once (the three version
# policies, the three scheduling choices, both sequence strategies, every oneof member).
_EVERYTHING = """
name: "everything"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
runtime: "model.py"
version_policy { specific { versions: [1, 3] } }
max_batch_size: 8
input {
  name: "image" data_type: TYPE_UINT8 format: FORMAT_NCHW dims: [1, 28, 28]
  reshape { shape: [784] } is_shape_tensor: true allow_ragged_batch: true optional: true
  is_non_linear_format_io: true
}
output {
  name: "scores" data_type: TYPE_FP32 dims: [10] reshape { shape: [1, 10] }
  label_filename: "labels.txt" is_shape_tensor: true is_non_linear_format_io: true
}
batch_input {
  kind: BATCH_ITEM_SHAPE_FLATTEN target_name: "shapes" data_type: TYPE_INT64
  source_input: "image"
}
batch_output { target_name: "scores" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "image" }
optimization {
  graph { level: -1 }
  priority: PRIORITY_MAX
  cuda {
    graphs: true busy_wait_events: true output_copy_stream: true
    graph_spec {
      batch_size: 4
      input { key: "image" value { dim: [4, 1, 28, 28] } }
      graph_lower_bound { batch_size: 1 input { key: "image" value { dim: [1, 1, 28, 28] } } }
    }
  }
  execution_accelerators {
    gpu_execution_accelerator {
      name: "tensorrt" parameters { key: "precision_mode" value: "FP16" }
    }
    cpu_execution_accelerator { name: "openvino" }
  }
  input_pinned_memory { enable: false }
  output_pinned_memory { enable: true }
  gather_kernel_buffer_threshold: 2
  eager_batching: true
}
dynamic_batching {
  preferred_batch_size: [4, 8]
  max_queue_delay_microseconds: 100
  preserve_ordering: true
  priority_levels: 2
  default_priority_level: 1
  default_queue_policy {
    timeout_action: DELAY default_timeout_microseconds: 5000 allow_timeout_override: true
    max_queue_size: 64
  }
  priority_queue_policy { key: 2 value { timeout_action: REJECT max_queue_size: 8 } }
}
instance_group {
  name: "gpus" kind: KIND_GPU count: 2 gpus: [0, 1] profile: ["0"] passive: true
  host_policy: "gpu_0"
  rate_limiter { resources { name: "R1" global: true count: 4 } priority: 2 }
  secondary_devices { kind: KIND_NVDLA device_id: 1 }
}
instance_group { kind: KIND_CPU count: 1 }
default_model_filename: "scratchnet.onnx"
cc_model_filenames { key: "7.5" value: "model_t4.plan" }
metric_tags { key: "team" value: "vision" }
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
model_warmup {
  name: "zeros" batch_size: 2 count: 3
  inputs { key: "image" value { data_type: TYPE_UINT8 dims: [1, 28, 28] zero_data: true } }
}
model_warmup {
  name: "file"
  inputs { key: "image" value { data_type: TYPE_UINT8 dims: [784] input_data_file: "raw" } }
}
model_warmup {
  name: "random"
  inputs { key: "image" value { data_type: TYPE_UINT8 dims: [784] random_data: true } }
}
model_operations { op_library_filename: "libcustom_ops.so" }
model_transaction_policy { decoupled: true }
model_repository_agents {
  agents { name: "checksum" parameters { key: "MD5:model.onnx" value: "0123abcd" } }
}
response_cache { enable: true }
model_metrics {
  metric_control {
    metric_identifier { family: "nv_inference_first_response_histogram_ms" }
    histogram_options { buckets: [1, 10, 100] }
  }
}
"""

_SEQUENCE_AND_ENSEMBLE = [
    """
    name: "stateful" max_batch_size: 4
    sequence_batching {
      max_sequence_idle_microseconds: 5000000
      oldest {
        max_candidate_sequences: 4 preferred_batch_size: [2, 4] max_queue_delay_microseconds: 10
        preserve_ordering: true
      }
      control_input {
        name: "START"
        control { kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] }
      }
      control_input {
        name: "READY" control { kind: CONTROL_SEQUENCE_READY bool_false_true: [false, true] }
      }
      control_input { name: "END" control { kind: CONTROL_SEQUENCE_END fp32_false_true: [0, 1] } }
      control_input {
        name: "CORRID" control { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }
      }
      state {
        input_name: "state_in" output_name: "state_out" data_type: TYPE_FP32 dims: [-1]
        initial_state { name: "zeros" data_type: TYPE_FP32 dims: [1] zero_data: true }
        initial_state { name: "file" data_type: TYPE_FP32 dims: [1] data_file: "state.bin" }
        use_same_buffer_for_input_output: true use_growable_memory: true
      }
      iterative_sequence: true
    }
    """,
    """
    name: "direct"
    sequence_batching { direct { max_queue_delay_microseconds: 100 minimum_slot_utilization: 0.5 } }
    version_policy { latest { num_versions: 2 } }
    """,
    """
    name: "pipeline" platform: "ensemble" max_batch_size: 8
    version_policy { all {} }
    ensemble_scheduling {
      step {
        model_name: "preprocess" model_version: -1 model_namespace: "vision"
        input_map { key: "raw" value: "IMAGE" } output_map { key: "pixels" value: "pixels" }
      }
      step { model_name: "scratchnet" model_version: 1 input_map { key: "image" value: "pixels" } }
      max_inflight_requests: 16
    }
    """,
]
_CONFIGS = [_EVERYTHING, *_SEQUENCE_AND_ENSEMBLE]


def _fields_set(message: Message) -> Iterator[str]:
    """Full names of the fields set in `message` and in the messages it holds."""
    for field, value in message.ListFields():
        yield field.full_name
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            held = value.values() if field.message_type.fields_by_name["value"].message_type else []
        else:
            held = value if field.is_repeated else [value]
        for item in held:
            yield from _fields_set(item)


def _all_fields(message: Descriptor) -> Iterator[FieldDescriptor]:
    """The fields of `message` and of the messages declared in it, map entries left out."""
    if not message.GetOptions().map_entry:
        yield from message.fields
        for nested in message.nested_types:
            yield from _all_fields(nested)


def test_the_sample_configurations_set_every_field() -> None:
    """So that the round trip below tries every field's encoding (bar the enum fields whose one
    value is 0, which proto3 never writes)."""
    configs = [text_format.Parse(text, model_config_pb2.ModelConfig()) for text in _CONFIGS]
    written = {name for config in configs for name in _fields_set(config)}
    unwritable = {"inference.BatchOutput.kind", "inference.ModelInstanceGroup.SecondaryDevice.kind"}
    every = {
        field.full_name
        for message in model_config_pb2.DESCRIPTOR.message_types_by_name.values()
        for field in _all_fields(message)
    }
    assert every - written == unwritable


@pytest.mark.parametrize(
    "pbtxt",
    _CONFIGS,
    ids=["everything", "oldest", "direct", "ensemble"],
)
def test_a_model_configuration_reads_the_same_in_tritonclient(pbtxt: str) -> None:
    config = text_format.Parse(pbtxt, model_config_pb2.ModelConfig())
    data = config.SerializeToString(deterministic=True)
    theirs = json.loads(_tritonclient(["-c", _TRITON_ROUND_TRIP], stdin=data))
    # Nothing unknown to tritonclient (print_unknown_fields would show it), every field the same.
    assert theirs["text"] == text_format.MessageToString(config)
    assert bytes.fromhex(theirs["data"]) == data
