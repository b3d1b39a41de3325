"""server.transports.grpc_calls.TimeLimit: one timer for every wait (a unary call's message, a
stream's next one), each still ended at its own deadline (the whole server: test_limits.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from scratchnet.errors import DeadlineExceeded
from server.transports.grpc_calls import TimeLimit

SECONDS = 0.3
LATE = 0.5
"""How late a deadline may be kept on a busy machine."""


class _Upload:
    """A call's context whose message arrives when `arrive` is called, or never."""

    def __init__(self) -> None:
        self._message: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def read(self) -> bytes:
        return await self._message

    def arrive(self, data: bytes) -> None:
        self._message.set_result(data)


async def _ended(limit: TimeLimit, upload: _Upload, begun: float) -> tuple[Any, float]:
    """What the limit's wait gave (a message or the error) and when, from `begun`."""
    try:
        outcome: Any = await limit.within(upload.read(), "stalled")
    except DeadlineExceeded as error:
        outcome = error
    return outcome, time.monotonic() - begun


def test_each_stalled_call_ends_at_its_own_deadline_and_arrivals_pass() -> None:
    async def run() -> list[tuple[Any, float]]:
        limit, begun = TimeLimit(SECONDS), time.monotonic()
        first, arriving, later = _Upload(), _Upload(), _Upload()
        waits = [asyncio.create_task(_ended(limit, first, begun))]
        await asyncio.sleep(0.05)
        waits.append(asyncio.create_task(_ended(limit, arriving, begun)))
        await asyncio.sleep(0.05)
        waits.append(asyncio.create_task(_ended(limit, later, begun)))
        await asyncio.sleep(0.05)
        arriving.arrive(b"message")
        return await asyncio.wait_for(asyncio.gather(*waits), 5)

    (first, first_at), (arrived, _), (later, later_at) = asyncio.run(run())
    assert isinstance(first, DeadlineExceeded) and str(first) == "stalled"
    assert arrived == b"message"
    # The timer set for the first call is set again for the third, not left to expire it early.
    assert isinstance(later, DeadlineExceeded)
    assert SECONDS <= first_at < SECONDS + LATE, first_at
    assert SECONDS + 0.1 <= later_at < SECONDS + 0.1 + LATE, later_at


def test_a_call_cancelled_by_its_client_stays_cancelled() -> None:
    async def run() -> None:
        limit = TimeLimit(SECONDS)
        wait = asyncio.create_task(limit.within(_Upload().read(), "stalled"))
        await asyncio.sleep(0.05)
        wait.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait
        # The limit forgot it: a later call is timed on its own.
        begun = time.monotonic()
        outcome, after = await asyncio.wait_for(_ended(limit, _Upload(), begun), 5)
        assert isinstance(outcome, DeadlineExceeded)
        assert SECONDS <= after < SECONDS + LATE, after

    asyncio.run(run())


def test_without_a_limit_a_call_waits_for_its_message() -> None:
    async def run() -> bytes | None:
        upload = _Upload()
        asyncio.get_running_loop().call_later(0.1, upload.arrive, b"late")
        return await TimeLimit(0).within(upload.read(), "stalled")

    assert asyncio.run(run()) == b"late"


def test_a_wait_that_ends_on_its_own_when_cancelled_leaves_no_cancellation_behind() -> None:
    async def stubborn() -> bytes:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return b"ended its own way"  # as a read might answer EOF
        return b""

    async def run() -> tuple[bytes, int]:
        answer = await TimeLimit(0.05).within(stubborn(), "stalled")
        task = asyncio.current_task()
        assert task is not None
        return answer, task.cancelling()

    assert asyncio.run(run()) == (b"ended its own way", 0)
