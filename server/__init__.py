"""The gRPC model server: `python -m server` serves an ONNX image classifier.

Modules, in the order a request meets them: app (server, health, reflection, shutdown), the
services (classifier_service for scratchnet.v1, inference_service for the Open Inference
Protocol), tensors (datatypes, raw bytes to arrays, input checks), runtime (onnxruntime), state
(what the services share), errors (status codes), config (flags and environment); and
launcher, which runs the server as a subprocess (the demo, benchmarks and tests use it).
"""
