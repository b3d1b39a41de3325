"""The transports: thin codecs around the data plane, one pair of modules per API.

grpc_errors   the error -> gRPC status wrapper and the interceptor for undecodable requests
v1_codec      scratchnet.v1 messages <-> ClassifyRequest / ClassifyResponse
v1_service    the scratchnet.v1.Classifier servicer
oip_codec     Open Inference Protocol messages <-> InferRequest / InferResponse
oip_service   the inference.GRPCInferenceService servicer
"""
