"""Running a model: one onnxruntime session on the CPU, opened once and shared by every call."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from scratchnet.errors import ModelError

__all__ = ["Session"]


class Session:
    """An onnxruntime InferenceSession with the server's options."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        """Open the model at `path` with `threads` intra-op threads (0: one per core)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Fatal only: every error reaches the server as an exception, reported once, its way.
        options.log_severity_level = 4
        # Idle intra-op threads would otherwise spin between inferences, taking the cores that
        # the gRPC workers need to decode the next requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                os.fspath(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own unrelated classes for bad files
            lines = str(error).strip().splitlines()
            reason = lines[0] if lines else type(error).__name__
            raise ModelError(f"model {path} cannot be loaded by onnxruntime: {reason}") from None

    def run(
        self,
        outputs: Sequence[str],
        feeds: Mapping[str, NDArray[Any]],
        options: ort.RunOptions | None = None,
    ) -> dict[str, NDArray[Any]]:
        """The named outputs for `feeds` (input name -> array), as numpy arrays; `options` can
        stop the run between two nodes (RunOptions.terminate)."""
        values = self._session.run(list(outputs), dict(feeds), options)
        return {name: np.asarray(value) for name, value in zip(outputs, values, strict=True)}
