"""A job's live feed: a follower who joins at any moment, reading the store after joining,
gets every line exactly once and in order (the SSE handler relies on this)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.adapters.store import Store
from gateway.models import Phase, ProgressEvent
from gateway.records import JobAction, LogLine
from gateway.services.progress import END, JobFeeds


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
                seen += [line.seq or 0 for line in await store.job_log(job.id)]
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
        stored = [line.seq or 0 for line in await store.job_log(job.id)]
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
        assert [line.seq or 0 for line in await store.job_log(job.id)] == [1, 2]
        assert [line.seq for line in await store.job_log(job.id, after=1)] == [2]
    finally:
        await store.close()


async def test_a_flush_cut_off_mid_write_is_not_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner cancels its periodic flusher when a job ends, possibly while it writes; the
    final flush once wrote the same lines again (UNIQUE constraint failed: job_log.seq)."""
    store = await Store.open(tmp_path / "gateway.db")
    write = store.append_log

    async def slow_write(job_id: str, lines: list[LogLine]) -> None:
        await write(job_id, lines)
        await asyncio.sleep(0.2)  # the rows are in; the commit is still on its way

    monkeypatch.setattr(store, "append_log", slow_write)
    try:
        job, _ = await store.create_job("p", JobAction.UPDATE)
        feeds = JobFeeds(store)
        await feeds.open(job.id)
        for n in range(3):
            feeds.publish(job.id, ProgressEvent(Phase.BUILDING, f"line {n}"))
        writing = asyncio.create_task(feeds.flush(job.id))
        await asyncio.sleep(0.1)
        queue, unwritten = feeds.follow(job.id)
        assert [u.seq for u in unwritten] == [1, 2, 3]  # followers still see the batch
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        feeds.publish(job.id, ProgressEvent(Phase.DONE, "done"))
        await feeds.flush(job.id)
        assert [line.seq or 0 for line in await store.job_log(job.id)] == [1, 2, 3, 4]
        feeds.unfollow(job.id, queue)
    finally:
        await store.close()
