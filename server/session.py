"""Running a model: one onnxruntime session on the CPU, opened once and shared by every call."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from scratchnet.errors import InvalidArgument, ModelError, ModelFailed, clip

__all__ = ["Session"]

_REASON_CHARS = 500
"""The most of onnxruntime's message a client is sent (a node's message can quote long shapes)."""
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")


class Session:
    """An onnxruntime InferenceSession with the server's options."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 0, name: str = "") -> None:
        """Open the model at `path` with `threads` intra-op threads (0: one per core); `name`
        is how messages call it (the path if none)."""
        self.where = f"model '{name}'" if name else f"model {path}"
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
        stop the run between two nodes (RunOptions.terminate).

        A run onnxruntime refuses or fails is reported with its reason, as Triton's onnxruntime
        backend does: InvalidArgument for inputs it refuses before running (its own
        INVALID_ARGUMENT), ModelFailed (INTERNAL) for a node that fails on these inputs, such as
        two inputs whose open dimensions do not broadcast."""
        try:
            values = self._session.run(list(outputs), dict(feeds), options)
        except ort_errors.InvalidArgument as error:
            raise InvalidArgument(
                f"{self.where}: onnxruntime refused the inputs: {_reason(error)}"
            ) from None
        except (ort_errors.Fail, ort_errors.RuntimeException, ort_errors.NotImplemented) as error:
            raise ModelFailed(
                f"{self.where}: onnxruntime could not run it on these inputs: {_reason(error)}"
            ) from None
        return {name: np.asarray(value) for name, value in zip(outputs, values, strict=True)}


def _reason(error: Exception) -> str:
    """onnxruntime's message as one line, without its "[ONNXRuntimeError] : 1 : FAIL : "."""
    return clip(_ORT_PREFIX.sub("", " ".join(str(error).split())), _REASON_CHARS)
