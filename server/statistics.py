"""Per-model inference statistics, as Triton's statistics extension reports them.

For each model version: successful and failed requests with their total time, the time spent
queued, preparing inputs, running the model and producing outputs, how many items were inferred
and how many times the model ran, per batch size too. Counters only grow; a model version that
is unloaded and loaded again keeps its figures (as long as the process lives).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["BatchStatistics", "Duration", "ModelStatistics", "Statistics", "Timing"]


@dataclass(frozen=True)
class Duration:
    """How many times something happened and how long it took in total."""

    count: int = 0
    ns: int = 0

    def plus(self, ns: int) -> Duration:
        """This duration with one more occurrence of `ns` nanoseconds."""
        return Duration(self.count + 1, self.ns + ns)


@dataclass(frozen=True)
class BatchStatistics:
    """The model runs of one batch size."""

    batch_size: int
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()


@dataclass(frozen=True)
class ModelStatistics:
    """The figures of one model version."""

    name: str
    version: str
    last_inference_ms: int = 0
    """Milliseconds since the epoch of the last successful request; 0 if none."""
    inference_count: int = 0
    """Items inferred (the batch sizes of successful requests, summed)."""
    execution_count: int = 0
    """Times the model ran (fewer than requests when requests are batched together)."""
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()
    batches: tuple[BatchStatistics, ...] = ()


@dataclass
class Timing:
    """The stages of one request, in nanoseconds, as the data plane measures them."""

    started: int = field(default_factory=time.perf_counter_ns)
    queue: int = 0
    compute_input: int = 0
    compute_infer: int = 0
    compute_output: int = 0

    @property
    def total(self) -> int:
        """Nanoseconds since the request started."""
        return time.perf_counter_ns() - self.started


class _Counters:
    """One model version's figures as they grow: [count, ns] pairs, mutated under the lock."""

    def __init__(self) -> None:
        self.last_inference_ms = 0
        self.inference_count = 0
        self.executions = 0.0
        self.stages = {stage: [0, 0] for stage in _STAGES}
        self.batches: dict[int, list[list[int]]] = {}

    def snapshot(self, name: str, version: str) -> ModelStatistics:
        stages = {stage: Duration(*pair) for stage, pair in self.stages.items()}
        return ModelStatistics(
            name,
            version,
            self.last_inference_ms,
            self.inference_count,
            round(self.executions),
            **stages,
            batches=tuple(
                BatchStatistics(size, *(Duration(*pair) for pair in self.batches[size]))
                for size in sorted(self.batches)
            ),
        )


_STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def _add(pair: list[int], ns: int) -> None:
    pair[0] += 1
    pair[1] += ns


class Statistics:
    """Thread-safe statistics of every model version that has served or failed a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], _Counters] = {}

    def success(
        self, name: str, version: str, items: int, timing: Timing, batch_items: int = 0
    ) -> None:
        """Record a successful request of `items` items, run in a batch of `batch_items` (its own
        size if 0): a batch of several requests counts as one execution among them."""
        total = timing.total
        ran_with = batch_items or items
        with self._lock:
            counters = self._models.get((name, version))
            if counters is None:
                counters = self._models[name, version] = _Counters()
            counters.last_inference_ms = time.time_ns() // 1_000_000
            counters.inference_count += items
            counters.executions += items / ran_with if ran_with else 1.0
            stages = counters.stages
            _add(stages["success"], total)
            _add(stages["queue"], timing.queue)
            _add(stages["compute_input"], timing.compute_input)
            _add(stages["compute_infer"], timing.compute_infer)
            _add(stages["compute_output"], timing.compute_output)
            batch = counters.batches.setdefault(ran_with, [[0, 0], [0, 0], [0, 0]])
            _add(batch[0], timing.compute_input)
            _add(batch[1], timing.compute_infer)
            _add(batch[2], timing.compute_output)

    def failure(self, name: str, version: str, timing: Timing) -> None:
        """Record a request to this model version that failed."""
        total = timing.total
        with self._lock:
            counters = self._models.get((name, version))
            if counters is None:
                counters = self._models[name, version] = _Counters()
            _add(counters.stages["fail"], total)

    def of(self, models: Iterable[tuple[str, str]]) -> list[ModelStatistics]:
        """The statistics of each (name, version), zero for those without any request yet."""
        with self._lock:
            return [
                counters.snapshot(*key)
                if (counters := self._models.get(key))
                else ModelStatistics(*key)
                for key in models
            ]
