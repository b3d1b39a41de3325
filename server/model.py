"""A model version ready to serve: its tensors as clients see them, its onnxruntime session, its
classifier view, labels and limits, loaded and checked together so that a request never meets a
half-loaded model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from scratchnet.contract import CLASS_LABELS, IMAGE_SHAPE, INPUT_SCALE_KEY, PRODUCER_NAME
from scratchnet.datatypes import Datatype
from scratchnet.errors import ModelError
from scratchnet.files import Identity, identity, not_a_file, require_model_file
from server.classifier import ImageClassifier, image_classifier
from server.memory import release_free_memory
from server.model_config import ModelConfig, ignored_fields, layout
from server.scheduling import BatchingConfig
from server.session import Session
from server.signature import Signature, TensorSpec, format_dims, read_signature

__all__ = ["Model", "load_model"]

_log = logging.getLogger(__name__)
_PROBE_ITEMS = 8
UNMEASURED = (float("inf"), 0.0)
"""The run time of a model that could not run on zeros at load: never run on the event loop."""
_SLICE_SIZES = (32, 64, 128, 256, 512)
"""Batch sizes tried at load for the fastest run per item (up to max_batch); larger probes
would raise the server's memory high-water mark for little (a run of 512 images of the
article's model already computes 16 MB of intermediates)."""
_SLICE_RUN_SECONDS = 0.02
"""No larger size is tried once a run takes this long: per-item gains are small by then."""
_SLICE_ROUNDS = 3
"""Rounds of the sizes, each timed once a round and keeping its best: a burst of other load on a
busy machine then slows one timing of a size, not every one of the larger sizes."""
_SLICE_SLACK = 1.10
"""Sizes within this factor of the best time per item count as equally fast."""


@dataclass(frozen=True, eq=False)
class Model:
    """One version of one model, loaded."""

    name: str
    version: str
    path: Path
    signature: Signature
    """The ONNX file's own inputs, outputs and metadata."""
    inputs: tuple[TensorSpec, ...]
    """The inputs as clients send them (config dims; -1 for the batch when it batches)."""
    outputs: tuple[TensorSpec, ...]
    """The outputs as clients receive them, in the graph's order."""
    session: Session
    classifier: ImageClassifier | None
    not_classifier: str
    """Why the model is not an image classifier ("" when it is one)."""
    max_batch: int
    """Most items one request may hold; 0 for a model without a batch dimension."""
    max_batch_origin: str
    """Where max_batch comes from, for messages: "the server's --max-batch"."""
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Class labels by output name, for the classification extension."""
    config: ModelConfig | None = None
    batching: BatchingConfig | None = None
    """The config's dynamic batching; None when it asks for none."""
    seconds: tuple[float, float] = (0.0, 0.0)
    """The measured run time: fixed seconds per run, and seconds per batch item; UNMEASURED
    when the trial run on zeros could not run."""
    slice_items: int = 0
    """The slice size chosen at load (_fastest_slice), which large batches are cut into (the
    intermediates of a larger run spill out of the cache); 0: none measured."""
    load_seconds: float = 0.0
    """How long loading took: reading and checking the file, building the session, first runs."""
    file_identity: Identity = (0, 0, 0)
    """The file's identity when it was loaded: whether the file on disk is still this model."""

    @property
    def file_unchanged(self) -> bool:
        """Whether the file at `path` is still the one this model was loaded from."""
        return identity(self.path) == self.file_identity

    @cached_property
    def input_specs(self) -> Mapping[str, TensorSpec]:
        """The inputs by name (made once: every request looks its tensors up here)."""
        return {spec.name: spec for spec in self.inputs}

    @cached_property
    def output_specs(self) -> Mapping[str, TensorSpec]:
        """The outputs by name."""
        return {spec.name: spec for spec in self.outputs}

    def describe(self, spec: TensorSpec, kind: str = "input") -> str:
        """How messages name a tensor: "input 'images' of model 'scratchnet'"."""
        return f"{kind} '{spec.name}' of model '{self.name}'"

    @property
    def splits_rows(self) -> bool:
        """Whether a large request may run in slices of its batch: only for this project's
        exports, whose graphs compute each row on its own (contract.PRODUCER_NAME)."""
        return self.max_batch > 0 and self.signature.producer_name == PRODUCER_NAME

    @property
    def slicing(self) -> str:
        """How the logs say large batches are cut: "" if they are not cut by size."""
        return f"; large batches run in slices of {self.slice_items}" if self.slice_items else ""

    @property
    def declares_input_scale(self) -> bool:
        """True when the model says how its float pixels are scaled (this project's models)."""
        return INPUT_SCALE_KEY in self.signature.metadata

    def accepted(self, spec: TensorSpec) -> tuple[Datatype, ...]:
        """The datatypes an input takes: its own, and UINT8 pixels for a float image input."""
        if self.classifier is not None and spec.name == self.classifier.input.name:
            return self.classifier.accepted
        return (spec.datatype,)


def load_model(
    path: str | os.PathLike[str],
    name: str,
    version: str = "",
    *,
    config: ModelConfig | None = None,
    threads: int = 0,
    max_batch: int,
    image_shape: tuple[int, int] | None = None,
    model_dir: Path | None = None,
) -> Model:
    """Load the ONNX file at `path` as version `version` (default: the file's model_version, "1"
    when unset) of model `name`, refined by its `config` (label files are in `model_dir`); time
    it on batches of zeros.

    ModelError with a one-line reason if the file is missing, unreadable, holds non-finite
    weights or disagrees with its config.
    """
    started = time.perf_counter()
    where = f"model {path}"
    loaded_identity = identity(path)  # before reading: a change while loading counts as one
    require_model_file(path, where)
    # First: onnxruntime's verdict on a bad file is the clearest.
    session = Session(path, threads, name)
    signature = read_signature(path)
    if signature.nonfinite:
        raise ModelError(
            f"{where}: weights {', '.join(signature.nonfinite[:5])} hold NaN or infinity, "
            "expected finite values"
        )
    shaped = layout(signature, config, max_batch, where)
    hints = _classifier_hints(signature, config, shaped.inputs, image_shape)
    classifier = image_classifier(hints, where)
    if config is not None:
        for ignored in ignored_fields(config):
            _log.info("%s: config field '%s' is not acted on by this server", where, ignored)
    batching = _batching(config, shaped.max_batch, where)
    model = Model(
        name=name,
        version=version or (str(signature.model_version) if signature.model_version else "1"),
        path=Path(path),
        signature=signature,
        inputs=shaped.inputs,
        outputs=shaped.outputs,
        session=session,
        classifier=classifier if isinstance(classifier, ImageClassifier) else None,
        not_classifier=classifier if isinstance(classifier, str) else "",
        max_batch=shaped.max_batch,
        max_batch_origin=shaped.max_batch_origin,
        labels=_labels(model_dir or Path(path).parent, shaped.label_files, signature, where),
        config=config,
        batching=batching,
    )
    seconds = _dry_run(model, where)
    slice_items = _fastest_slice(model) if model.splits_rows and seconds[1] > 0 else 0
    return replace(
        model,
        seconds=seconds,
        slice_items=slice_items,
        load_seconds=time.perf_counter() - started,
        file_identity=loaded_identity,
    )


def _classifier_hints(
    signature: Signature,
    config: ModelConfig | None,
    inputs: tuple[TensorSpec, ...],
    image_shape: tuple[int, int] | None,
) -> Signature:
    """The signature with what a config or the command line says about the image: config
    parameters (output_role.*, image_shape) and config dims [H,W] over a flat input."""
    metadata = dict(signature.metadata)
    if config is not None:
        metadata.update({key: value.string_value for key, value in config.parameters.items()})
        shape = metadata.pop("image_shape", "")
        if shape:
            metadata[IMAGE_SHAPE] = json.dumps(_parse_image_shape(shape))
        if len(inputs) == 1 and len(inputs[0].dims) == 3 and inputs[0].model_dims is not None:
            metadata.setdefault(IMAGE_SHAPE, json.dumps(list(inputs[0].dims[1:])))
    if image_shape is not None:
        metadata.setdefault(IMAGE_SHAPE, json.dumps(list(image_shape)))
    return replace(signature, metadata=metadata)


def _parse_image_shape(text: str) -> list[int]:
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ModelError(f"config parameter image_shape is {text!r}, expected HxW such as 28x28")
    return [int(part) for part in parts]


def _labels(
    folder: Path, files: Mapping[str, str], signature: Signature, where: str
) -> dict[str, tuple[str, ...]]:
    """Labels by output: the config's label files, else metadata class_labels for each [N,C]
    output with as many classes."""
    labels: dict[str, tuple[str, ...]] = {}
    for output, file_name in files.items():
        path = folder / file_name
        if not path.is_file():  # a folder or a broken link; a FIFO would block the load for ever
            raise ModelError(f"{where}: label file {path} {not_a_file(path)}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ModelError(f"{where}: cannot read label file {path}: {error}") from None
        labels[output] = tuple(lines)
    try:
        listed = json.loads(signature.metadata.get(CLASS_LABELS, "null"))
    except json.JSONDecodeError:
        listed = None
    if isinstance(listed, list):
        for spec in signature.outputs:
            if spec.name not in labels and len(spec.dims) == 2 and spec.dims[1] == len(listed):
                labels[spec.name] = tuple(str(label) for label in listed)
    return labels


def _batching(config: ModelConfig | None, max_batch: int, where: str) -> BatchingConfig | None:
    if config is None or not config.HasField("dynamic_batching"):
        return None
    settings = config.dynamic_batching
    for size in settings.preferred_batch_size:
        # As Triton: a size no batch can reach, or that every batch reaches, is a mistake (with
        # max_batch_size 0, which batches nothing, every size is).
        if not 1 <= size <= max_batch:
            raise ModelError(
                f"{where}: config dynamic_batching preferred_batch_size {size} is outside 1 to "
                f"max_batch_size {max_batch}"
            )
    if max_batch <= 0:
        return None  # a model without a batch dimension: nothing to batch
    return BatchingConfig(
        max_delay_seconds=settings.max_queue_delay_microseconds / 1e6,
        preferred_sizes=tuple(int(size) for size in settings.preferred_batch_size),
        max_queue=settings.default_queue_policy.max_queue_size,
    )


def _zeros(model: Model, items: int) -> dict[str, NDArray[Any]] | None:
    """Inputs of zeros with `items` items in each batch dimension; None if numpy lacks a type."""
    feeds: dict[str, NDArray[Any]] = {}
    for spec in model.signature.inputs:
        shape = tuple(
            items if index == 0 and dim < 0 else 1 if dim < 0 else dim
            for index, dim in enumerate(spec.dims)
        )
        dtype = spec.datatype.numpy
        if dtype is None:
            return None
        zeros = np.zeros(shape, dtype=dtype) if dtype.kind != "O" else np.full(shape, b"", object)
        feeds[spec.name] = zeros
    return feeds


def _dry_run(model: Model, where: str) -> tuple[float, float]:
    """Measure the model's fixed and per-item run time for the scheduler, from runs on batches
    of zeros; UNMEASURED when it cannot run on them.

    Zeros, with 1 for every open dimension, are no input a model owes an answer: a convolution
    needs a larger image, a Reshape or Range takes its shape or step from an input. So a model
    that fails here is served all the same, as Triton serves models without running them, and
    the reason is logged: a request it cannot run gets onnxruntime's reason (Session.run)."""
    feeds = _zeros(model, 1)
    if feeds is None:
        return UNMEASURED  # a type numpy lacks (BF16): onnxruntime's load is the only check
    outputs = [spec.name for spec in model.signature.outputs]
    try:
        model.session.run(outputs, feeds)
    except Exception as error:  # onnxruntime raises its own unrelated classes
        reason = " ".join(str(error).split()) or type(error).__name__
        shapes = ", ".join(f"{name} {format_dims(value.shape)}" for name, value in feeds.items())
        _log.warning(
            "%s does not run on a one-item batch of zeros (%s), so its run time is not "
            "measured and its runs all go to the inference threads: %s",
            where, shapes, reason,
        )  # fmt: skip
        return UNMEASURED
    one = _timed(model, outputs, feeds)
    many = _zeros(model, _PROBE_ITEMS) if model.max_batch >= _PROBE_ITEMS else None
    if many is None:
        return (one, 0.0)
    try:
        several = _timed(model, outputs, many)
    except Exception:  # a model that batches only some sizes: keep the one-item figure
        return (one, 0.0)
    per_item = max(0.0, (several - one) / (_PROBE_ITEMS - 1))
    return (max(0.0, one - per_item), per_item)


def _fastest_slice(model: Model) -> int:
    """The middle one (the smaller of two) of the sizes within _SLICE_SLACK of the fastest per
    item, from runs on zeros of growing sizes (0 if the model does not batch, or runs too few
    items for two sizes)."""
    outputs = [spec.name for spec in model.signature.outputs]
    probes: dict[int, dict[str, NDArray[Any]]] = {}
    per_item: dict[int, float] = {}
    for size in _SLICE_SIZES:
        feeds = _zeros(model, size) if size <= model.max_batch else None
        if feeds is None:
            break
        try:
            seconds = _timed(model, outputs, feeds)
        except Exception:  # a model that batches only some sizes: keep what was measured
            break
        probes[size], per_item[size] = feeds, seconds / size
        if seconds > _SLICE_RUN_SECONDS:
            break
    for _ in range(_SLICE_ROUNDS - 1):
        for size, feeds in probes.items():
            per_item[size] = min(per_item[size], _timed(model, outputs, feeds) / size)
    del probes
    # The probes' memory goes back to the system: an idle server must not keep what a run of
    # 512 items took. A last run tells onnxruntime's arena to shrink (asked of every probe, it
    # would make each pay for fresh pages and skew the timings); glibc then returns the pages.
    shrink = ort.RunOptions()
    shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    one = _zeros(model, 1)
    if one is not None:
        model.session.run(outputs, one, shrink)
    release_free_memory()
    if len(per_item) < 2:
        return 0
    best = min(per_item.values())
    fast = sorted(size for size, seconds in per_item.items() if seconds <= best * _SLICE_SLACK)
    # Within the slack the order of the sizes is the machine's noise. The largest of them
    # risks what these runs, each repeated on an input hot in the cache, do not show: the
    # spill of a request's intermediates; the smallest, more runs. The largest, taken for "no
    # slices needed" as it was before, let 1000-image requests to the uint8 model run whole,
    # 1.3 times slower than in slices of 256; 512 was 1.1 times slower (docs/performance.md).
    return fast[(len(fast) - 1) // 2]


def _timed(model: Model, outputs: list[str], feeds: dict[str, NDArray[Any]]) -> float:
    """The best of a few runs, in seconds (the first runs warm caches up)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        model.session.run(outputs, feeds)
        best = min(best, time.perf_counter() - started)
    return best
