"""The Python client of scratchnet's gRPC API: `Client(target).predict(images)`.

from clients import Client

with Client("127.0.0.1:50051") as client:
    labels = client.predict(images).labels
"""

# First: Ctrl-C while the imports below run is one line, not a traceback (scratchnet.starting).
import scratchnet.starting  # noqa: F401

# isort: split

from clients.client import BatchPrediction, Client, ModelInfo, Prediction
from scratchnet.errors import (
    ClientError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    ServerUnavailableError,
)

__all__ = [
    "BatchPrediction",
    "Client",
    "ClientError",
    "DeadlineExceededError",
    "InvalidArgumentError",
    "ModelInfo",
    "NotFoundError",
    "Prediction",
    "ServerUnavailableError",
]
