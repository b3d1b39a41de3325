"""scratchnet's core: what the trainer, the exporter, the server and the clients share.

errors     the error hierarchy, drawn once in its docstring
status     the one table from request errors to gRPC and HTTP status codes
contract   the model contract: tensor names, metadata keys, pixel scaling, defaults
datatypes  the one datatype table (numpy, protocol, v1, ONNX, Triton, bytes per element)
forward    the numpy forward pass, the reference every runtime is checked against
artifact   the trainer artifact's format (written by the trainer, read by the exporter)
datasets   data sets: the bundled MNIST, IDX folders, npz files; idx reads IDX files
cli        what every command line shares: one-line errors, exit codes
starting   imported first by the command packages: Ctrl-C while they import is one line too
files      atomic file writes
versions   the installed scratchnet version
launcher   running `python -m server` as a subprocess (demo, benchmarks, tests)
api        code generated from proto/ (`make proto`)
web        preprocess.mjs: the MNIST-style preprocessing the playground and the Node.js client share

The parts meet through files (the artifact, model.onnx) and the wire, not through imports: each
imports this core and nothing of the others. Importing it loads neither onnx nor onnxruntime.
"""

from scratchnet.errors import ScratchnetError
from scratchnet.versions import scratchnet_version

__all__ = ["ScratchnetError", "scratchnet_version"]
