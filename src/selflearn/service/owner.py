"""One thread owns the rewriter's memory and the store's write connection; requests queue for it.

The event loop only parses, authenticates and queues, so it stays free to answer — and to refuse —
whatever the owner thread is doing. Admission control sheds a request at once (503 with Retry-After)
when it cannot be started before its deadline: the queue ahead of it, times the recent time per job
(an exponentially weighted mean), already exceeds the time it has left, or the queue is at its cap.
To leave room for what happens around the job (parsing, the network), the queue ahead may hold at
most ``ADMIT_SHARE`` of the deadline. A job whose deadline passes while it waits is dropped unstarted: a rewrite that arrives after the
assistant gave up on it is useless, and doing it anyway would make every later request late too.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import OverloadedError

__all__ = ["Owner"]

T = TypeVar("T")
ADMIT_SHARE = 0.5  # the share of a request's deadline the work queued ahead of it may take


class Owner:
    def __init__(self, *, max_queue: int = 256, name: str = "selflearn-owner") -> None:
        self.max_queue = max_queue
        self.name = name
        self._pool: ThreadPoolExecutor | None = None  # started on first use (again after close: an app's lifespan may run twice)
        self.waiting = 0  # queued or running
        self.job_s = 0.003  # EWMA of the time per job (seconds), a cautious start
        self.shed = 0
        self.expired = 0

    def saturated(self, budget_s: float) -> bool:
        """Whether a request with ``budget_s`` seconds to go would be refused now."""
        return self.waiting >= self.max_queue or (self.waiting + 1) * self.job_s > ADMIT_SHARE * budget_s

    def retry_after_s(self) -> int:
        """Seconds until the work queued now is done (at least 1): the Retry-After of a refusal."""
        return max(1, math.ceil(self.waiting * self.job_s))

    def _admit(self, budget_s: float) -> None:
        expected = (self.waiting + 1) * self.job_s
        if self.saturated(budget_s):
            self.shed += 1
            retry = self.retry_after_s()
            raise OverloadedError(f"the service is at capacity ({self.waiting} requests queued, about {expected * 1000:.0f} ms of work ahead "
                             f"against a deadline of {budget_s * 1000:.0f} ms); fix: pass the request through, retry after {retry} s, or add capacity", retry)

    async def run(self, fn: Callable[..., T], *args: Any, deadline_s: float) -> T:
        """Run ``fn(*args)`` on the owner thread, within ``deadline_s`` seconds from now."""
        start = time.monotonic()
        self._admit(deadline_s)
        until = start + deadline_s
        self.waiting += 1

        gate = {"lock": threading.Lock(), "started": False, "dropped": False}

        def job():
            with gate["lock"]:
                if gate["dropped"] or time.monotonic() > until:
                    return _Expired
                gate["started"] = True
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.job_s = 0.9 * self.job_s + 0.1 * (time.perf_counter() - t)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        fut = asyncio.get_running_loop().run_in_executor(self._pool, job)
        fut.add_done_callback(self._done)
        try:
            out = await asyncio.wait_for(asyncio.shield(fut), timeout=max(0.0, until - time.monotonic()))
        except TimeoutError:
            with gate["lock"]:
                gate["dropped"] = not gate["started"]
            out = _Expired if gate["dropped"] else await fut  # a started job (e.g. a write) is finished, never cut off
        if out is _Expired:
            self.expired += 1
            raise OverloadedError(f"the request waited past its deadline of {deadline_s * 1000:.0f} ms; fix: retry, or add capacity", 1)
        return out

    def _done(self, _fut) -> None:
        self.waiting -= 1

    def close(self) -> None:
        """Finish what was started, then stop the thread."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class _ExpiredType:
    pass


_Expired = _ExpiredType()
