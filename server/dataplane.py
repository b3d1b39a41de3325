"""The data plane: one transport-free path from a decoded request to named output arrays.

Every API decodes into an InferRequest (the Open Inference Protocol: any model, its own tensor
names) or a ClassifyRequest (scratchnet.v1: images in, labels, scores, probabilities out) and
encodes what comes back. Both go through `_admit`/`_finish` (the memory budget, the
statistics and every observer) and `_run` (the model's scheduler: inline, inference threads or
dynamic batching), so that limits, metrics, batching and cancellation exist once. The checks
(server.checks) come in the order a client can fix its request: model, outputs, inputs (name,
datatype, shape, data, values), then the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from numpy.typing import NDArray

from scratchnet.contract import VERSIONS
from scratchnet.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    RequestError,
    ResourceExhausted,
    TooLarge,
    Unavailable,
    clip,
)
from server import checks
from server.checks import RequestedOutput
from server.model import Model
from server.repository import ModelRepository
from server.scheduling import Batcher, BatchingConfig, Executor, Job, Limits, Runner
from server.statistics import ModelStatistics, Statistics, Timing
from server.tensors import InputTensor

__all__ = [
    "Call",
    "ClassifyRequest",
    "ClassifyResponse",
    "DataPlane",
    "InferRequest",
    "InferResponse",
    "Observer",
    "Outcome",
    "RequestedOutput",
]


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class InferRequest:
    """A model's own inputs by name; `outputs` empty means all of the model's outputs."""

    model_name: str
    model_version: str = ""
    inputs: Sequence[InputTensor] = ()
    outputs: Sequence[RequestedOutput] = ()
    id: str = ""


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class InferResponse:
    """The requested outputs by name, in the order asked (the model's order if none was)."""

    model_name: str
    model_version: str
    id: str
    outputs: dict[str, NDArray[Any]]


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class ClassifyRequest:
    """Images [N,H,W] for an image classifier; `outputs` among label, scores, probabilities."""

    model_name: str
    model_version: str
    images: InputTensor | None
    outputs: Sequence[str] = ("label",)
    id: str = ""


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class ClassifyResponse:
    """Labels [N] and, when asked, scores and probabilities [N,C]."""

    model_name: str
    model_version: str
    id: str
    num_classes: int
    outputs: dict[str, NDArray[Any]]


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class Call:
    """What a transport knows of the call: its API and method (for metrics and logs) and when
    the caller stops waiting (time.monotonic seconds; None: never)."""

    api: str = "v2"
    deadline: float | None = None
    method: str = ""
    """The gRPC method ("ModelInfer") or the HTTP request line ("POST /v2/models/m/infer")."""


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class Outcome:
    """One request as observers see it, once it is answered or refused."""

    api: str
    model: str
    version: str
    items: int
    status: str
    """"OK", or the name of the error's kind ("InvalidArgument", "Internal", ...)."""
    reason: str
    timing: Timing
    batch_items: int = 0
    method: str = ""


class Observer(Protocol):
    """Something told of every request (metrics, the access log)."""

    def observe(self, outcome: Outcome) -> None:
        """Take note of one request."""
        ...


class _Admission:
    """A request between `_admit` and `_finish`: what it holds and what it learns as it runs."""

    __slots__ = ("call", "items", "job", "model", "size", "timing")

    def __init__(self, model: Model, call: Call, timing: Timing, size: int) -> None:
        self.model = model
        self.call = call
        self.timing = timing
        self.size = size
        """Input bytes held of the memory budget."""
        self.items = 0
        self.job: Job | None = None


class _OpenCall:
    """DataPlane.call_opened's block; a class, not a generator: every call enters one."""

    __slots__ = ("_plane",)

    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    def __enter__(self) -> None:
        plane = self._plane
        if plane.shutting_down:
            raise Unavailable("the server is shutting down: retry shortly, or on another server")
        plane.open_calls += 1
        plane._no_calls.clear()

    def __exit__(self, *exc_info: object) -> None:
        plane = self._plane
        plane.open_calls -= 1
        if plane.open_calls == 0:
            plane._no_calls.set()

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()


class DataPlane:
    """Looks up the model, checks the request against it, runs it, selects the outputs."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        limits: Limits | None = None,
        statistics: Statistics | None = None,
        budget_bytes: int = 0,
        request_seconds: float = 0.0,
        batching: BatchingConfig | None = None,
    ) -> None:
        """`budget_bytes`: most input bytes in flight (0: no limit); `request_seconds`: the
        server's own deadline for a request (0: none); `batching`: dynamic batching for every
        batching model without a config of its own (None: only models whose config asks)."""
        self.repository = repository
        self.limits = limits or Limits()
        self.statistics = statistics or Statistics()
        self.budget_bytes = budget_bytes
        self.request_seconds = request_seconds
        self.batching = batching
        self.observers: list[Observer] = []
        self.shutting_down = False
        self.expose_versions = False
        """Whether clients see the software versions a model was trained with."""
        self.inflight_bytes = 0
        self.inflight = 0
        self.open_calls = 0
        """Calls the transports have open (streams included), for the drain."""
        self._no_calls = asyncio.Event()
        self._no_calls.set()
        self._executor: Executor | None = None
        self._schedulers: weakref.WeakKeyDictionary[Model, Runner | Batcher] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def ready(self) -> bool:
        """True while the models are loaded and the server is not shutting down."""
        return self.repository.ready and not self.shutting_down

    @property
    def executor(self) -> Executor:
        """The inference threads (made on first use, in the serving event loop)."""
        if self._executor is None:
            self._executor = Executor(self.limits)
        return self._executor

    def queue_depth(self) -> int:
        """Jobs waiting for an inference thread or in a batching queue."""
        batching = sum(s.depth for s in self._schedulers.values() if isinstance(s, Batcher))
        return self.executor.waiting + batching

    def metadata(self, model: Model) -> dict[str, str]:
        """The model's metadata_props as clients see them: the training host's software
        versions (keys under `versions.`) only with --expose-versions."""
        if self.expose_versions:
            return dict(model.signature.metadata)
        hidden = f"{VERSIONS}."
        return {k: v for k, v in model.signature.metadata.items() if not k.startswith(hidden)}

    def model(self, name: str, version: str = "") -> Model:
        """The model serving `name` at `version` ("" = the newest); NotFound or Unavailable, or
        InvalidArgument for a version that is not a number."""
        return self.repository.get(name, version)

    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether model `name` at `version` can infer now: false, not an error, while it loads,
        when it is not served and during shutdown; InvalidArgument for a version that is not a
        number, as Triton's ModelReady answers."""
        try:
            self.model(name, version)
        except (NotFound, Unavailable):
            return False
        return not self.shutting_down

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        """Triton's statistics: of every loaded model version, of `name`'s, or of one version;
        InvalidArgument for a model or version not served, in Triton's words (its statistics
        extension says so where its other calls say NotFound)."""
        try:
            if name:
                self.model(name)
        except (NotFound, Unavailable):
            raise InvalidArgument(f"requested model '{clip(name)}' is not available") from None
        if name and version:
            try:
                models = [self.model(name, version)]
            except (NotFound, Unavailable):
                raise InvalidArgument(
                    f"requested model version is not available for model '{clip(name)}'"
                ) from None
        else:
            models = [m for m in self.repository.models() if not name or m.name == name]
        return self.statistics.of([(model.name, model.version) for model in models])

    async def infer(self, request: InferRequest, call: Call | None = None) -> InferResponse:
        """Run a model on its own inputs and return the requested outputs (`call`: what the
        transport knows of the call; none for an in-process caller)."""
        call = call or Call()
        model = self._model_for(call, request.model_name, request.model_version)
        admission = self._admit(model, call, request.inputs)
        try:
            outputs = checks.requested_outputs(model, request.outputs)
            arrays = {
                spec.name: (spec, checks.input_array(model, spec, tensor))
                for spec, tensor in checks.matched_inputs(model, request.inputs)
            }
            admission.items = checks.batch_size(model, list(arrays.values()))
            feeds = {name: checks.as_model_takes(model, *pair) for name, pair in arrays.items()}
            job = admission.job = Job(feeds, [spec.name for spec, _ in outputs], admission.items)
            results = await self._run(model, job, admission.timing, call)
            started = time.perf_counter_ns()
            answer = {
                spec.name: checks.as_client_gets(model, spec, results[spec.name], count)
                for spec, count in outputs
            }
            checks.check_output_room(model, request.outputs, answer)
            admission.timing.compute_output += time.perf_counter_ns() - started
        except BaseException as error:
            self._finish(admission, error)
            raise
        self._finish(admission, None)
        return InferResponse(model.name, model.version, request.id, answer)

    async def classify(
        self, request: ClassifyRequest, call: Call | None = None
    ) -> ClassifyResponse:
        """Classify images with an image classifier."""
        call = call or Call(api="v1")
        model = self._model_for(call, request.model_name, request.model_version)
        classifier = model.classifier
        if classifier is None:
            error = InvalidArgument(
                f"model '{model.name}' is not an image classifier ({model.not_classifier}): "
                "call it through the Open Inference Protocol with its own inputs"
            )
            self.refused(call, error, model)
            raise error
        images_tensor = [request.images] if request.images is not None else []
        admission = self._admit(model, call, images_tensor)
        try:
            classifier.check_outputs(request.outputs, model.name)
            if request.images is None:
                raise InvalidArgument(
                    f"{model.describe(classifier.input)}: the request has no images tensor"
                )
            images = checks.input_array(
                model,
                classifier.input,
                request.images,
                tuple(classifier.input_shape),
                classifier.accepted,
            )
            admission.items = len(images)
            feeds = {classifier.input.name: classifier.feed(images)}
            job = admission.job = Job(feeds, classifier.onnx_outputs, len(images))
            results = await self._run(model, job, admission.timing, call)
            started = time.perf_counter_ns()
            answer = classifier.answer(results, request.outputs)
            admission.timing.compute_output += time.perf_counter_ns() - started
        except BaseException as error:
            self._finish(admission, error)
            raise
        self._finish(admission, None)
        return ClassifyResponse(
            model.name, model.version, request.id, classifier.num_classes, answer
        )

    async def _run(
        self, model: Model, job: Job, timing: Timing, call: Call
    ) -> dict[str, NDArray[Any]]:
        """The one place a model runs: its scheduler, within the call's deadline."""
        started = time.perf_counter_ns()
        timing.compute_input = started - timing.started
        deadline = self._deadline(call)
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExceeded(_late(model, call, deadline))
        scheduler = self._scheduler(model)
        # A job run inline never waits, so it needs no timer: most batch-1 calls end here.
        results = scheduler.run_inline(job)
        if results is not None:
            pass
        elif deadline is None:
            results = await scheduler.run(job)
        else:
            try:
                # asyncio.timeout, not wait_for: no task of its own for every request.
                async with asyncio.timeout(deadline - time.monotonic()):
                    results = await scheduler.run(job)
            except TimeoutError:
                raise DeadlineExceeded(_late(model, call, deadline)) from None
        ran = time.perf_counter_ns()
        timing.queue = job.queue_ns
        timing.compute_infer = ran - started - job.queue_ns
        checks.check_batch_results(model, job.feeds, results)
        checks.check_finite_results(model, results)
        timing.compute_output = time.perf_counter_ns() - ran
        return results

    def _deadline(self, call: Call) -> float | None:
        """The earlier of the caller's deadline and the server's own (--request-timeout)."""
        own = time.monotonic() + self.request_seconds if self.request_seconds else None
        if call.deadline is None:
            return own
        return call.deadline if own is None else min(own, call.deadline)

    def _scheduler(self, model: Model) -> Runner | Batcher:
        scheduler = self._schedulers.get(model)
        if scheduler is None:
            runner = Runner(
                model.session, self.executor, model.seconds, model.splits_rows, model.slice_items
            )
            batching = model.batching or (self.batching if model.max_batch > 0 else None)
            scheduler = runner if batching is None else Batcher(runner, batching, model.max_batch)
            self._schedulers[model] = scheduler
        return scheduler

    def refused(
        self,
        call: Call,
        error: Exception,
        model: Model | None = None,
        started: int | None = None,
    ) -> None:
        """Tell every observer of a call refused before its request was admitted (no such
        model, a request that does not decode, a server shutting down, or a bug: Internal):
        once per error; and, with the `model` it named, that model's statistics (a failure
        once its model was found). `started`: when the transport took the call
        (time.perf_counter_ns)."""
        if getattr(error, "observed", False):
            return
        _mark_observed(error)
        status, reason = _status(error)
        timing = Timing() if started is None else Timing(started)
        if model is not None:
            self.statistics.failure(model.name, model.version, timing)
        outcome = Outcome(
            call.api,
            model.name if model is not None else "",
            model.version if model is not None else "",
            0,
            status,
            reason,
            timing,
            0,
            call.method,
        )
        for observer in self.observers:
            observer.observe(outcome)

    def refused_naming(
        self, call: Call, error: Exception, name: str, version: str, started: int | None = None
    ) -> Exception:
        """`refused`, for a request that names model `name` at `version` but does not decode:
        counted under that model if it is served, like every request that fails once its model
        is found, whichever check caught it. Not a server shutting down (Unavailable): that is
        no model's failure, and gRPC refuses it before it knows the model.

        Returns the error to answer: when `name` at `version` is not served, the lookup's own
        (NotFound, ...) in place of the request's mistake, as the checks go model first."""
        model: Model | None = None
        if not isinstance(error, Unavailable):
            try:
                model = self.model(name, version)
            except RequestError as lookup:
                if isinstance(error, RequestError) and not error.observed:
                    error = lookup
        self.refused(call, error, model, started)
        return error

    def _model_for(self, call: Call, name: str, version: str) -> Model:
        try:
            return self.model(name, version)
        except RequestError as error:
            self.refused(call, error)
            raise

    def _admit(self, model: Model, call: Call, tensors: Sequence[InputTensor]) -> _Admission:
        """Take the request's share of the memory budget (ResourceExhausted when it does not
        fit now, TooLarge when it never can); every admission ends in one `_finish`, however the
        request ends."""
        admission = _Admission(model, call, Timing(), checks.declared_bytes(tensors, model))
        self.inflight += 1
        if self.budget_bytes and self.inflight_bytes + admission.size > self.budget_bytes:
            error: RequestError
            if admission.size > self.budget_bytes:
                error = TooLarge(
                    f"model '{model.name}': the request's inputs take {admission.size:,} bytes, "
                    f"more than the {self.budget_bytes:,} the server holds at once "
                    "(--max-inflight-mb); send a smaller batch"
                )
            else:
                error = ResourceExhausted(
                    f"model '{model.name}': the request's inputs take {admission.size:,} bytes "
                    f"and {self.inflight_bytes:,} of the {self.budget_bytes:,} allowed "
                    "(--max-inflight-mb) are in use; retry later or send a smaller batch"
                )
            admission.size = 0
            self._finish(admission, error)
            raise error
        self.inflight_bytes += admission.size
        return admission

    def _finish(self, admission: _Admission, error: BaseException | None) -> None:
        """Give the budget back and tell the statistics and every observer how it ended."""
        self.inflight -= 1
        self.inflight_bytes -= admission.size
        model, timing, job = admission.model, admission.timing, admission.job
        batch = job.batch_items if job is not None else 0
        if error is None:
            status, reason = "OK", ""
            run = job.run if job is not None else None
            new_run = run is None or not run.counted  # a merged run counts once, as Triton's
            if run is not None:
                run.counted = True
            self.statistics.success(
                model.name, model.version, admission.items, timing, batch, new_run
            )
        else:
            status, reason = _status(error)
            if job is not None and not timing.queue:  # ended while queued: how long it waited
                timing.queue = job.queue_ns
            self.statistics.failure(model.name, model.version, timing)
            _mark_observed(error)
        if self.observers:
            outcome = Outcome(
                admission.call.api,
                model.name,
                model.version,
                admission.items,
                status,
                reason,
                timing,
                batch,
                admission.call.method,
            )
            for observer in self.observers:
                observer.observe(outcome)

    def call_opened(self) -> _OpenCall:
        """Count a transport's call as open for a `with` (or `async with`) block; once shutdown
        has begun, a new call is Unavailable (calls already open go on: the drain waits for
        them)."""
        return _OpenCall(self)

    async def drained(self) -> None:
        """Return once no call is open."""
        await self._no_calls.wait()

    def close(self) -> None:
        """Stop the inference threads (once the transports have drained)."""
        if self._executor is not None:
            self._executor.shutdown()


def _mark_observed(error: BaseException) -> None:
    """Note on `error` that observers have been told of it, so that the transport that sees it
    next does not tell them again."""
    with contextlib.suppress(AttributeError):  # an exception class with __slots__
        error.observed = True  # type: ignore[attr-defined]


def _status(error: BaseException) -> tuple[str, str]:
    """The status and reason observers see for a request that ended in `error`."""
    if isinstance(error, RequestError):
        return type(error).__name__, str(error)
    if isinstance(error, asyncio.CancelledError):
        return "Cancelled", "the client cancelled the call or its deadline passed"
    return "Internal", f"{type(error).__name__}: {error}"


def _late(model: Model, call: Call, deadline: float) -> str:
    if call.deadline is not None and deadline == call.deadline:
        return f"model '{model.name}': the call's deadline passed before its answer was ready"
    return (
        f"model '{model.name}': the request took longer than the server allows (--request-timeout)"
    )
