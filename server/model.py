"""A model version ready to serve: its signature, its onnxruntime session, its classifier view and
its limits, loaded together so that a request never meets a half-loaded model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scratchnet.contract import INPUT_SCALE_KEY
from scratchnet.datatypes import Datatype
from scratchnet.errors import ModelError
from server.classifier import ImageClassifier, image_classifier
from server.session import Session
from server.signature import Signature, TensorSpec, read_signature

__all__ = ["Model", "load_model"]


@dataclass(frozen=True)
class Model:
    """One version of one model, loaded."""

    name: str
    version: str
    path: Path
    signature: Signature
    session: Session
    classifier: ImageClassifier | None
    max_batch: int
    """Most items the batch dimension may hold in one request."""
    max_batch_origin: str
    """Where max_batch comes from, for messages: "the server's --max-batch"."""

    def describe(self, spec: TensorSpec, kind: str = "input") -> str:
        """How messages name a tensor: "input 'images' of model 'scratchnet'"."""
        return f"{kind} '{spec.name}' of model '{self.name}'"

    @property
    def declares_input_scale(self) -> bool:
        """True when the model says how its float pixels are scaled (this project's models)."""
        return INPUT_SCALE_KEY in self.signature.metadata

    def accepted(self, spec: TensorSpec) -> tuple[Datatype, ...]:
        """The datatypes an input takes: its own, and UINT8 pixels for a float image input."""
        if self.classifier is not None and spec == self.classifier.input:
            return self.classifier.accepted
        return (spec.datatype,)


def load_model(
    path: str | os.PathLike[str],
    name: str,
    *,
    threads: int = 0,
    max_batch: int,
    max_batch_origin: str = "the server's --max-batch",
) -> Model:
    """Load the ONNX file at `path` as model `name`; ModelError with a one-line reason if the file
    is missing, unreadable or not a model this server can serve."""
    where = f"model {path}"
    if not Path(path).is_file():
        raise ModelError(f"{where} not found (export one with `python -m export`)")
    session = Session(path, threads)  # first: onnxruntime's verdict on a bad file is the clearest
    signature = read_signature(path)
    classifier = image_classifier(signature, where)
    version = str(signature.model_version) if signature.model_version > 0 else "1"
    return Model(
        name=name,
        version=version,
        path=Path(path),
        signature=signature,
        session=session,
        classifier=classifier,
        max_batch=max_batch,
        max_batch_origin=max_batch_origin,
    )
