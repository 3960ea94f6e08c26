"""A running job's progress, line by line: numbered as it happens, written to the store in
batches, and handed at once to whoever follows the job live (GET /jobs/{id}/events).

Followers get every line exactly once and in order: the store's lines, then those not yet
written, then what comes next, told apart by their sequence numbers.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from gateway.adapters.store import Store
from gateway.models import ProgressEvent
from gateway.records import LogLine, now

END = None  # put on a follower's queue when its job has finished or was folded into another
FollowerQueue = asyncio.Queue[LogLine | None]


@dataclass
class _Feed:
    last_seq: int
    unwritten: list[LogLine] = field(default_factory=list)
    writing: list[LogLine] = field(default_factory=list)  # the batch on its way to the store
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)


class JobFeeds:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._feeds: dict[str, _Feed] = {}
        self._followers: defaultdict[str, set[FollowerQueue]] = defaultdict(set)

    async def open(self, job_id: str) -> None:
        """Before a job runs: its numbering goes on from what the store has (a resumed job,
        a line written while it waited)."""
        self._feeds[job_id] = _Feed(await self.store.last_log_seq(job_id))

    def publish(self, job_id: str, event: ProgressEvent) -> None:
        feed = self._feeds[job_id]
        feed.last_seq += 1
        line = LogLine(now(), event, feed.last_seq)
        feed.unwritten.append(line)
        for queue in self._followers.get(job_id, ()):
            queue.put_nowait(line)

    async def flush(self, job_id: str) -> None:
        feed = self._feeds.get(job_id)
        if feed is None:
            return
        async with feed.flushing:
            batch = feed.writing = feed.unwritten[:]
            del feed.unwritten[: len(batch)]
            if not batch:
                return
            # A write, once begun, ends: cut off halfway it would leave the lines neither
            # written nor waiting, or, retried, written twice.
            write = asyncio.ensure_future(self.store.append_log(job_id, batch))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await write
                raise
            finally:
                feed.writing = []

    def close(self, job_id: str) -> None:
        """The job's record is final: tell its followers to read it."""
        self._feeds.pop(job_id, None)
        for queue in self._followers.get(job_id, ()):
            queue.put_nowait(END)

    def close_all(self) -> None:
        for job_id in list(self._followers):
            self.close(job_id)

    def follow(self, job_id: str) -> tuple[FollowerQueue, list[LogLine]]:
        """A queue of the job's lines from now on, and the lines published but not yet in
        the store (read the store after this call, not before)."""
        queue: FollowerQueue = asyncio.Queue()
        self._followers[job_id].add(queue)
        feed = self._feeds.get(job_id)
        return queue, [*feed.writing, *feed.unwritten] if feed else []

    def unfollow(self, job_id: str, queue: FollowerQueue) -> None:
        followers = self._followers.get(job_id)
        if followers is not None:
            followers.discard(queue)
            if not followers:
                del self._followers[job_id]
