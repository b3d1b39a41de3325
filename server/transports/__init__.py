"""The transports: thin codecs around the data plane, a codec and a service per API and binding.

grpc_calls    what every gRPC method shares: raw-bytes registration, timeouts, status codes
wire          tensor bytes read out of a serialized message as views, without protobuf's copies
v1_codec      scratchnet.v1 messages <-> ClassifyRequest / ClassifyResponse
v1_service    the scratchnet.v1.Classifier servicer
oip_codec     Open Inference Protocol messages (Triton's extensions too) <-> the data plane's
oip_service   the inference.GRPCInferenceService servicer
http_codec    the protocol's HTTP/REST bodies (JSON, binary tensor data) <-> the data plane's
http_app      the HTTP listener: Starlette routes on uvicorn, on the server's own event loop
"""
