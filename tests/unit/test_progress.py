"""A job's live feed: a follower who joins at any moment, reading the store after joining,
gets every line exactly once and in order (the SSE handler relies on this)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.models import Phase, ProgressEvent
from gateway.services.progress import END, JobFeeds
from gateway.services.store import JobAction, Store


async def follow_at(ops: list[str], join: int, root: Path) -> tuple[list[int], list[int]]:
    store = await Store.open(root / "gateway.db")
    try:
        job, _ = await store.create_job("p", JobAction.UPDATE)
        feeds = JobFeeds(store)
        await feeds.open(job.id)
        seen: list[int] = []
        queue = None
        for index, op in enumerate([*ops, "end"]):
            if index == join:
                queue, unwritten = feeds.follow(job.id)
                seen += [line["seq"] for line in await store.job_log(job.id)]
                seen += [
                    u.seq for u in unwritten if u.seq is not None and u.seq > max(seen, default=0)
                ]
            if op == "publish":
                feeds.publish(job.id, ProgressEvent(Phase.BUILDING, f"line {index}"))
            elif op == "flush":
                await feeds.flush(job.id)
        await feeds.flush(job.id)
        feeds.close(job.id)
        assert queue is not None
        while (item := queue.get_nowait()) is not END:
            assert item is not None and item.seq is not None
            if item.seq > max(seen, default=0):
                seen.append(item.seq)
        stored = [line["seq"] for line in await store.job_log(job.id)]
        return seen, stored
    finally:
        await store.close()


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.sampled_from(["publish", "flush"]), max_size=20),
    join=st.integers(min_value=0, max_value=20),
)
def test_a_follower_gets_every_line_once_in_order(ops: list[str], join: int) -> None:
    join = min(join, len(ops))
    with tempfile.TemporaryDirectory() as root:
        seen, stored = asyncio.run(follow_at(ops, join, Path(root)))
    assert stored == list(range(1, ops.count("publish") + 1))
    assert seen == stored


async def test_numbering_goes_on_from_what_the_store_has(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "gateway.db")
    try:
        job, _ = await store.create_job("p", JobAction.UPDATE)
        feeds = JobFeeds(store)
        for _ in range(2):  # a job resumed after a restart keeps its earlier lines
            await feeds.open(job.id)
            feeds.publish(job.id, ProgressEvent(Phase.FETCHING, "x"))
            await feeds.flush(job.id)
            feeds.close(job.id)
        assert [line["seq"] for line in await store.job_log(job.id)] == [1, 2]
        assert [line["seq"] for line in await store.job_log(job.id, after=1)] == [2]
    finally:
        await store.close()
