"""proto/inference/model_config.proto reads Triton config.pbtxt files: realistic ones parse into our
ModelConfig with the values they spell, and a mistake is refused with the field and line it is on.

test_wire_compatibility.py checks the schema itself against tritonclient's copy of Triton's.
"""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from onnx import helper

from export.graph import build_graph
from export.triton import LABELS_FILE, config_pbtxt
from scratchnet.api.inference import model_config_pb2 as mc

# An ONNX Runtime classifier with most of what a production config sets.
ONNX_CLASSIFIER = """
name: "mnist"
platform: "onnxruntime_onnx"
max_batch_size: 64
version_policy: { specific: { versions: [ 1, 3 ] } }
input [
  {
    name: "image"
    data_type: TYPE_UINT8
    format: FORMAT_NCHW
    dims: [ 1, 28, 28 ]
  },
  {
    name: "flat"
    data_type: TYPE_FP32
    dims: [ 784 ]
    reshape: { shape: [ 28, 28 ] }
  }
]
output [
  {
    name: "scores"
    data_type: TYPE_FP32
    dims: [ 10 ]
    label_filename: "labels.txt"
  }
]
dynamic_batching {
  preferred_batch_size: [ 16, 32 ]
  max_queue_delay_microseconds: 500
  default_queue_policy { timeout_action: REJECT max_queue_size: 256 }
}
instance_group [
  { count: 2 kind: KIND_GPU gpus: [ 0 ] },
  { count: 4 kind: KIND_CPU }
]
optimization {
  graph: { level: 1 }
  execution_accelerators {
    gpu_execution_accelerator: [
      { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } }
    ]
  }
}
parameters: { key: "intra_op_thread_count" value: { string_value: "2" } }
parameters: { key: "cudnn_conv_algo_search" value: { string_value: "1" } }
model_warmup [
  {
    name: "zeros"
    batch_size: 8
    inputs { key: "image" value { data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] zero_data: true } }
  }
]
"""

# A Python backend model that streams responses (a decoupled model).
PYTHON_DECOUPLED = """
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: True }
input [
  { name: "prompt" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] optional: true }
]
output [ { name: "text" data_type: TYPE_STRING dims: [ -1 ] } ]
instance_group [ { kind: KIND_MODEL } ]
response_cache { enable: false }
"""

# An ensemble of two steps, and a stateful model with the sequence batcher.
ENSEMBLE = """
name: "pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_UINT8 dims: [ -1 ] } ]
output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ 10 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "preprocess"
      model_version: -1
      input_map { key: "bytes" value: "RAW" }
      output_map { key: "pixels" value: "pixels" }
    },
    {
      model_name: "mnist"
      model_version: -1
      input_map { key: "image" value: "pixels" }
      output_map { key: "scores" value: "SCORES" }
    }
  ]
}
"""
SEQUENCE = """
name: "accumulator"
backend: "onnxruntime"
max_batch_size: 4
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  direct { }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
  state [
    {
      input_name: "total_in"
      output_name: "total_out"
      data_type: TYPE_FP32
      dims: [ 1 ]
      initial_state: { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "zero" }
    }
  ]
}
input [ { name: "value" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "total" data_type: TYPE_FP32 dims: [ 1 ] } ]
version_policy: { latest: { num_versions: 2 } }
"""


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def test_an_onnx_classifier() -> None:
    config = parse(ONNX_CLASSIFIER)
    assert (config.name, config.platform, config.max_batch_size) == (
        "mnist",
        "onnxruntime_onnx",
        64,
    )
    assert config.version_policy.WhichOneof("policy_choice") == "specific"
    assert list(config.version_policy.specific.versions) == [1, 3]

    image, flat = config.input
    assert (image.name, image.data_type) == ("image", mc.TYPE_UINT8)
    assert image.format == mc.ModelInput.FORMAT_NCHW
    assert list(image.dims) == [1, 28, 28] and not image.HasField("reshape")
    assert list(flat.dims) == [784] and list(flat.reshape.shape) == [28, 28]
    (scores,) = config.output
    assert (scores.data_type, list(scores.dims)) == (mc.TYPE_FP32, [10])
    assert scores.label_filename == "labels.txt"

    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    batching = config.dynamic_batching
    assert list(batching.preferred_batch_size) == [16, 32]
    assert batching.max_queue_delay_microseconds == 500
    assert batching.default_queue_policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert batching.default_queue_policy.max_queue_size == 256

    gpu, cpu = config.instance_group
    assert (gpu.count, gpu.kind, list(gpu.gpus)) == (2, mc.ModelInstanceGroup.KIND_GPU, [0])
    assert (cpu.count, cpu.kind, list(cpu.gpus)) == (4, mc.ModelInstanceGroup.KIND_CPU, [])

    assert config.optimization.graph.level == 1
    (tensorrt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert tensorrt.name == "tensorrt" and dict(tensorrt.parameters) == {"precision_mode": "FP16"}
    assert {key: value.string_value for key, value in config.parameters.items()} == {
        "intra_op_thread_count": "2",
        "cudnn_conv_algo_search": "1",
    }
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 8
    assert warmup.inputs["image"].WhichOneof("input_data_type") == "zero_data"


def test_a_decoupled_python_model() -> None:
    config = parse(PYTHON_DECOUPLED)
    assert config.backend == "python" and config.max_batch_size == 0
    assert config.model_transaction_policy.decoupled
    assert [tensor.optional for tensor in config.input] == [False, True]
    assert config.input[0].data_type == mc.TYPE_STRING
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_MODEL
    assert config.HasField("response_cache") and not config.response_cache.enable
    assert config.WhichOneof("scheduling_choice") is None


def test_an_ensemble_and_a_sequence_model() -> None:
    ensemble = parse(ENSEMBLE)
    assert ensemble.WhichOneof("scheduling_choice") == "ensemble_scheduling"
    steps = ensemble.ensemble_scheduling.step
    assert [(step.model_name, step.model_version) for step in steps] == [
        ("preprocess", -1),
        ("mnist", -1),
    ]
    assert dict(steps[1].output_map) == {"scores": "SCORES"}

    sequence = parse(SEQUENCE)
    assert sequence.WhichOneof("scheduling_choice") == "sequence_batching"
    batcher = sequence.sequence_batching
    assert batcher.WhichOneof("strategy_choice") == "direct"
    start, corrid = batcher.control_input
    assert start.control[0].kind == mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START
    assert list(start.control[0].fp32_false_true) == [0.0, 1.0]
    assert corrid.control[0].data_type == mc.TYPE_UINT64
    (state,) = batcher.state
    assert state.initial_state[0].WhichOneof("state_data") == "zero_data"
    assert sequence.version_policy.latest.num_versions == 2


def test_the_configuration_scratchnet_export_writes() -> None:
    graph = build_graph(np.zeros((10, 28, 28)), np.zeros(10), "uint8", "scratchnet")
    config = parse(config_pbtxt(helper.make_model(graph), 256))
    assert (config.name, config.platform, config.max_batch_size) == (
        "scratchnet",
        "onnxruntime_onnx",
        256,
    )
    assert config.input[0].data_type == mc.TYPE_UINT8
    assert LABELS_FILE in {output.label_filename for output in config.output}
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        # A misspelled field of ModelConfig...
        (
            'name: "mnist"\nmax_batch_sise: 8\n',
            2,
            1,
            'Message type "inference.ModelConfig" has no field named "max_batch_sise".',
        ),
        # ... and of a nested message.
        (
            "dynamic_batching {\n  max_queue_delay_microseconds: 100\n"
            "  preferred_batch_sizes: [ 4, 8 ]\n}\n",
            3,
            3,
            'Message type "inference.ModelDynamicBatching" has no field named '
            '"preferred_batch_sizes".',
        ),
        # An enum value that does not exist.
        (
            'input [ { name: "x" data_type: TYPE_FLOAT32 dims: [ 1 ] } ]\n',
            1,
            32,
            'Enum type "inference.DataType" has no value named TYPE_FLOAT32.',
        ),
        # Two scheduling choices: they are a oneof.
        (
            "dynamic_batching { }\nsequence_batching { }\n",
            2,
            1,
            'Field "sequence_batching" is specified along with field "dynamic_batching", another '
            'member of oneof "scheduling_choice" for message type "inference.ModelConfig".',
        ),
    ],
    ids=["field", "nested field", "enum value", "oneof"],
)
def test_a_mistake_is_refused_where_it_is(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(text_format.ParseError) as error:
        parse(text)
    assert (error.value.GetLine(), error.value.GetColumn()) == (line, column)
    assert str(error.value).startswith(f"{line}:{column} : ")
    assert message in str(error.value)


def test_a_misspelled_field_in_a_full_configuration() -> None:
    text = ONNX_CLASSIFIER.replace("label_filename:", "label_file_name:")
    line = 1 + text[: text.index("label_file_name")].count("\n")
    with pytest.raises(text_format.ParseError, match=rf"^{line}:5 : .*\"label_file_name\""):
        parse(text)
    assert text.splitlines()[line - 1].strip().startswith("label_file_name:")
