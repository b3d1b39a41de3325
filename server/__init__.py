"""The model server: `python -m server` serves ONNX models over gRPC.

Modules, in the order a request meets them: app (the gRPC server, health, reflection, signals,
shutdown), transports (one codec and one servicer per API: scratchnet.v1 and the Open Inference
Protocol), dataplane (the one path from a decoded request to outputs: lookup, checks, run),
tensors (a request's tensors and their decoding), repository (the models served, by name and
version), model (a loaded model version), signature (what an ONNX file offers, read without
running it), classifier (the image-classifier view scratchnet.v1 serves), session
(onnxruntime), health (grpc.health.v1), config (flags and environment).
"""
