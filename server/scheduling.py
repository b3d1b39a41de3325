"""Where and when a model runs: the one place the data plane hands work to onnxruntime.

A small job (its estimated time under `Limits.inline_seconds`) runs right away on the event loop:
a thread hand-off would cost more than the job. Larger jobs go to the inference threads, behind a
bounded queue (`Limits.max_queue`; past it, RESOURCE_EXHAUSTED naming the limit). A model whose
rows are known to be computed each on its own (Model.splits_rows: this project's exports) runs a
large job in slices of about `Limits.slice_bytes` of input, so that a cancelled or timed-out call
stops within one slice, or of the batch size that ran fastest per item at load
(Model.slice_items), so that its intermediates stay in the cache; any other model runs each
job whole, as Triton does, and stops between two of onnxruntime's nodes when its call is
cancelled. A model with dynamic batching sends its jobs through a `Batcher`, which merges those
waiting into one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from scratchnet.errors import ResourceExhausted
from server.session import Session

__all__ = ["Batcher", "BatchingConfig", "Executor", "Job", "Limits", "Runner", "SharedRun"]

Arrays = dict[str, NDArray[Any]]


@dataclass(frozen=True)
class Limits:
    """How much the server takes on at once."""

    threads: int = 2
    """Inference threads: jobs running at the same time outside the event loop."""
    max_queue: int = 512
    """Jobs waiting for an inference thread before new ones get RESOURCE_EXHAUSTED."""
    inline_seconds: float = 0.001
    """Jobs expected to take less run on the event loop, without a thread hand-off (which,
    under load, costs about a millisecond: docs/performance.md)."""
    slice_bytes: int = 1 << 20
    """Input bytes per run of a large batch: the batch runs in slices of about this size."""


@dataclass(frozen=True)
class BatchingConfig:
    """A model's dynamic batching, as Triton's dynamic_batching configures it."""

    max_delay_seconds: float = 0.0
    """How long a job may wait for others; 0: only those already waiting join it."""
    preferred_sizes: tuple[int, ...] = ()
    """Batch sizes to dispatch at once when reached (within the delay)."""
    max_queue: int = 0
    """Jobs waiting in this model's queue before new ones get RESOURCE_EXHAUSTED; 0: the
    server's --max-queue."""


@dataclass(slots=True, eq=False)  # by identity: comparing feeds would compare numpy arrays
class Job:
    """One run of a model: its inputs, the outputs wanted and how many items its batch holds
    (0 for a model without a batch dimension)."""

    feeds: Arrays
    outputs: Sequence[str]
    items: int
    queue_ns: int = 0
    """Set by the scheduler: how long the job waited before it ran."""
    batch_items: int = 0
    """Set by the scheduler: the size of the batch the job ran in."""
    run: SharedRun | None = None
    """Set by the scheduler when the job ran merged with others: that one run."""


class SharedRun:
    """One model run that several jobs took part in (dynamic batching), so that it is counted
    once among them."""

    __slots__ = ("counted",)

    def __init__(self) -> None:
        self.counted = False


class _Stop:
    """How a running job learns that nobody waits for it any more."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.options = ort.RunOptions()

    def set(self) -> None:
        self.event.set()
        self.options.terminate = True  # onnxruntime checks it between nodes


class Executor:
    """The inference threads, shared by every model, and the bounded queue in front of them."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._pool = ThreadPoolExecutor(limits.threads, thread_name_prefix="inference")
        self._outstanding = 0
        self.running = 0

    @property
    def waiting(self) -> int:
        """Jobs queued for a thread (the event loop's count: read it there)."""
        return max(0, self._outstanding - self.limits.threads)

    @property
    def idle(self) -> bool:
        """Whether no job is running or waiting."""
        return self._outstanding == 0

    def admit(self, queue_limit: int = 0) -> None:
        """ResourceExhausted if the queue is full (`queue_limit`, else --max-queue)."""
        limit = queue_limit or self.limits.max_queue
        if self.waiting >= limit:
            origin = "the model's max_queue_size" if queue_limit else "the server's --max-queue"
            raise ResourceExhausted(
                f"the inference queue is full: {self.waiting} calls are waiting ({origin} is "
                f"{limit}); retry later"
            )

    async def call(self, function: Callable[[], Any]) -> Any:
        """Run `function` on an inference thread; the caller has been admitted."""
        self._outstanding += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function)
        finally:
            self._outstanding -= 1

    def shutdown(self) -> None:
        """Stop the threads once their jobs are done."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class Runner:
    """Runs one model's jobs: inline, or on the inference threads in slices, cancellably."""

    def __init__(
        self,
        session: Session,
        executor: Executor,
        seconds: tuple[float, float],
        splits_rows: bool,
        slice_items: int = 0,
    ) -> None:
        """`seconds`: the model's measured (fixed, per-item) run time; `splits_rows`: whether a
        large job may run in slices of its batch (Model.splits_rows); `slice_items`: the batch
        size that runs fastest per item (0: unknown)."""
        self.session = session
        self.executor = executor
        self.fixed_seconds, self.item_seconds = seconds
        self.splits_rows = splits_rows
        self.slice_items = slice_items

    def estimate(self, items: int) -> float:
        """The expected run time of a job of `items` items, in seconds."""
        return self.fixed_seconds + self.item_seconds * max(items, 1)

    def run_inline(self, job: Job) -> Arrays | None:
        """The job's outputs if it is small enough to run right here and no thread is busy
        (it would wait for nothing), else None: `run` it."""
        if self.estimate(job.items) < self.executor.limits.inline_seconds and self.executor.idle:
            job.batch_items = job.items
            return self.session.run(job.outputs, job.feeds)
        return None

    async def run(self, job: Job, queue_limit: int = 0) -> Arrays:
        """The job's outputs; its run stops if the awaiting call is cancelled."""
        results = self.run_inline(job)
        if results is not None:
            return results
        self.executor.admit(queue_limit)
        job.batch_items = job.items
        stop = _Stop()
        queued = time.perf_counter_ns()

        def work() -> Arrays:
            job.queue_ns = time.perf_counter_ns() - queued
            return self._sliced(job, stop)

        try:
            result: Arrays = await self.executor.call(work)
        except asyncio.CancelledError:
            stop.set()
            if not job.queue_ns:  # cancelled before it ran: it waited all along
                job.queue_ns = time.perf_counter_ns() - queued
            raise
        return result

    def _sliced(self, job: Job, stop: _Stop) -> Arrays:
        """Run the job in slices of the batch (all of it at once for a small job)."""
        size = self._slice_items(job)
        if size >= job.items:
            return self.session.run(job.outputs, job.feeds, stop.options)
        parts: list[Arrays] = []
        for start in range(0, job.items, size):
            if stop.event.is_set():
                raise RuntimeError("the call was cancelled")  # nobody is there to see it
            chunk = {name: value[start : start + size] for name, value in job.feeds.items()}
            parts.append(self.session.run(job.outputs, chunk, stop.options))
        return {name: np.concatenate([part[name] for part in parts]) for name in job.outputs}

    def _slice_items(self, job: Job) -> int:
        if not self.splits_rows or job.items <= 1:
            return max(job.items, 1)
        item_bytes = sum(value.nbytes for value in job.feeds.values()) // job.items or 1
        size = max(1, self.executor.limits.slice_bytes // item_bytes)
        return min(size, self.slice_items) if self.slice_items else size


@dataclass(eq=False)  # by identity: list.remove must not compare jobs' numpy arrays
class _Waiting:
    job: Job
    future: asyncio.Future[Arrays]
    key: tuple[Any, ...]
    enqueued: int = field(default_factory=time.perf_counter_ns)


class Batcher:
    """Dynamic batching for one model: jobs that wait together run as one batch.

    A batch leaves when no batch of the model is running (with a delay of 0, whatever waits by
    then joins it), when the waiting items reach a preferred size, or when the first waiting job
    has waited `max_delay_seconds`; it holds up to `max_batch` items, only of jobs whose inputs
    share their non-batch shapes and types.
    """

    def __init__(self, runner: Runner, config: BatchingConfig, max_batch: int) -> None:
        self.runner = runner
        self.config = config
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting to be batched."""
        return len(self._waiting)

    def run_inline(self, job: Job) -> Arrays | None:
        """The job's outputs when nothing could join it (no delay, nothing waiting or running)
        and it is small enough to run right here, else None: `run` it."""
        if self.config.max_delay_seconds or self._waiting or not self._idle():
            return None
        return self.runner.run_inline(job)

    async def run(self, job: Job) -> Arrays:
        """The job's outputs, once the batch it joins has run."""
        limit = self.config.max_queue or self.runner.executor.limits.max_queue
        if len(self._waiting) >= limit:
            origin = "the model's max_queue_size" if self.config.max_queue else "--max-queue"
            raise ResourceExhausted(
                f"the model's batching queue is full: {len(self._waiting)} calls are waiting "
                f"({origin} is {limit}); retry later"
            )
        loop = asyncio.get_running_loop()
        key = tuple(
            (name, value.dtype.str, value.shape[1:]) for name, value in sorted(job.feeds.items())
        )
        waiting = _Waiting(job, loop.create_future(), (key, tuple(job.outputs)))
        self._waiting.append(waiting)
        self._start(loop)
        try:
            return await waiting.future
        except asyncio.CancelledError:
            if waiting in self._waiting:
                self._waiting.remove(waiting)  # never runs: it waited all along
                job.queue_ns = time.perf_counter_ns() - waiting.enqueued
            raise

    def _idle(self) -> bool:
        return self._task is None or self._task.done()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._idle():
            self._task = loop.create_task(self._dispatch(), name="batcher")

    async def _dispatch(self) -> None:
        assert self._wake is not None
        while self._waiting:
            self._wake.clear()
            first = self._waiting[0]
            deadline = first.enqueued + int(self.config.max_delay_seconds * 1e9)
            items = sum(w.job.items for w in self._waiting if w.key == first.key)
            preferred = any(size <= items for size in self.config.preferred_sizes)
            now = time.perf_counter_ns()
            if now < deadline and not preferred and items < self.max_batch:
                timeout = (deadline - now) / 1e9
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            await self._run_batch(self._take(first.key))

    def _take(self, key: tuple[Any, ...]) -> list[_Waiting]:
        batch: list[_Waiting] = []
        total = 0
        for waiting in list(self._waiting):
            if waiting.key != key or (batch and total + waiting.job.items > self.max_batch):
                continue
            batch.append(waiting)
            total += waiting.job.items
            self._waiting.remove(waiting)
        return batch

    async def _run_batch(self, batch: list[_Waiting]) -> None:
        batch = [waiting for waiting in batch if not waiting.future.done()]
        if not batch:
            return
        started = time.perf_counter_ns()
        first = batch[0].job
        feeds = {
            name: np.concatenate([waiting.job.feeds[name] for waiting in batch])
            if len(batch) > 1
            else first.feeds[name]
            for name in first.feeds
        }
        total = sum(waiting.job.items for waiting in batch)
        merged = Job(feeds, first.outputs, total)
        run = asyncio.ensure_future(self.runner.run(merged, self.config.max_queue))
        abandoned = False

        def abandon(_: object) -> None:
            # Once every call of the batch is cancelled or out of time, nobody waits for the
            # run: cancelling it stops it within one slice, as a call without batching would.
            nonlocal abandoned
            if not run.done() and all(waiting.future.done() for waiting in batch):
                abandoned = True
                run.cancel()

        for waiting in batch:
            waiting.future.add_done_callback(abandon)
        try:
            results = await run
        except BaseException as error:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            if isinstance(error, asyncio.CancelledError) and not abandoned:
                raise  # the batcher itself is cancelled (the server stops)
            return
        offset = 0
        shared = SharedRun() if len(batch) > 1 else None
        for waiting in batch:
            count = waiting.job.items
            waiting.job.queue_ns = started - waiting.enqueued + merged.queue_ns
            waiting.job.batch_items = total
            waiting.job.run = shared
            if not waiting.future.done():
                waiting.future.set_result(
                    {name: value[offset : offset + count] for name, value in results.items()}
                )
            offset += count
