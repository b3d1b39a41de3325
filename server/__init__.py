"""The model server: `python -m server` serves ONNX models — one file, or a Triton model
repository — over gRPC (scratchnet.v1 and the Open Inference Protocol) and HTTP/REST.

Every API decodes into one transport-free data plane, so checks, limits, scheduling, statistics,
metrics and the access log exist once. docs/architecture.md shows how the layers fit.

transports      the codecs and services per API and binding: gRPC (v1, OIP) and HTTP
dataplane       DataPlane: model lookup, memory budget, deadlines, statistics and observers
checks          every request check, once: outputs, inputs, results, config reshapes
tensors         a request's tensors as sent, and their decoding into arrays
scheduling      where and when a model runs: inline, inference threads, dynamic batching
session         the onnxruntime session and its options
repository      the models served, by name and version, and the repository index
model_control   which files are served, and when they load, reload and unload
model           a model version loaded and checked, with its tensors, session and limits
model_config    config.pbtxt read as Triton reads it, checked against the ONNX file
signature       what an ONNX file offers, read without running it
classifier      the image-classifier view scratchnet.v1 serves
classification  Triton's classification extension (top classes)
shared_memory   Triton's system shared-memory extension (/dev/shm regions)
statistics      Triton's per-model statistics
metrics, logs   Prometheus metrics, log formats and the access log
app             start-up, the listeners, signals and the drain
config          flags and their environment variables
security        TLS and bearer tokens
health          grpc.health.v1 statuses
memory          glibc allocator tuning
playground      the HTTP playground's page and what it is told about a model
"""

# First: Ctrl-C while the imports below run is one line, not a traceback (scratchnet.starting).
import scratchnet.starting  # noqa: F401
