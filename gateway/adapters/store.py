"""Durable state in SQLite under STATE_DIR: jobs, their logs, and the published notebooks.

A job row is written before the request that created it is answered, and holds everything
needed to run it again, so unfinished jobs can be resumed after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.models import NotebookAction, NotebookOutcome, NotebookState, Phase, ProgressEvent
from gateway.records import (
    FINISHED,
    JobAction,
    JobError,
    JobOrigin,
    JobRecord,
    JobState,
    LogLine,
    ServerRecord,
    ServerState,
    WorkVolume,
    now,
)

SCHEMA = [
    # version 1
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        commit_sha TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        notebooks TEXT NOT NULL DEFAULT '[]',
        error TEXT
    );
    CREATE INDEX jobs_state ON jobs (state);
    CREATE TABLE job_log (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at TEXT NOT NULL,
        phase TEXT NOT NULL,
        notebook TEXT,
        message TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    CREATE TABLE notebooks (
        project TEXT NOT NULL,
        path TEXT NOT NULL,
        record TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project, path)
    );
    """,
    # version 2: where a job came from, what it was given, and how duplicates fold into it
    """
    ALTER TABLE jobs ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
    ALTER TABLE jobs ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN result TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;
    ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
    ALTER TABLE jobs ADD COLUMN covered_by TEXT;
    ALTER TABLE jobs ADD COLUMN parent TEXT;
    CREATE INDEX jobs_dedupe ON jobs (dedupe_key);
    CREATE INDEX jobs_idempotency ON jobs (idempotency_key);
    CREATE INDEX jobs_created ON jobs (created_at);
    """,
    # version 3: users' own servers (the request, and how far it got)
    """
    CREATE TABLE servers (
        name TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        username TEXT NOT NULL,
        namespace TEXT NOT NULL,
        project TEXT NOT NULL,
        branch TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        notebook TEXT NOT NULL,
        image TEXT NOT NULL,
        options TEXT NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL,
        url TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX servers_user ON servers (user_id);
    """,
    # version 4: build and push output told apart from the job's steps
    """
    ALTER TABLE job_log ADD COLUMN output INTEGER NOT NULL DEFAULT 0;
    """,
    # version 5: admin sessions taken back by a logout, until they would have expired
    """
    CREATE TABLE revoked_sessions (sid TEXT PRIMARY KEY, expires REAL NOT NULL);
    """,
    # version 6: what renku's clients read of a server: its GitLab project, the launch's
    # step, and the options that were ignored
    """
    ALTER TABLE servers ADD COLUMN gitlab_project_id INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE servers ADD COLUMN repository TEXT NOT NULL DEFAULT '';
    ALTER TABLE servers ADD COLUMN step TEXT NOT NULL DEFAULT '';
    ALTER TABLE servers ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
    """,
    # version 7: users' work areas (volumes), which outlive their servers
    """
    ALTER TABLE servers ADD COLUMN volume TEXT NOT NULL DEFAULT '';
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        username TEXT NOT NULL,
        namespace TEXT NOT NULL,
        project TEXT NOT NULL,
        node TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        used_at TEXT NOT NULL
    );
    """,
]


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        # One connection serves every coroutine: a write's statements and its commit must not
        # interleave with another's (check-then-insert of deduplicated jobs, log sequence
        # numbers, and SQLite itself, which rejects statements interleaved with a commit).
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode = WAL")
        # Safe from corruption with WAL; a power cut may lose the last commits (a job's log
        # lines), never what the engine and git already hold.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA busy_timeout = 5000")
        (version,) = await (await db.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
        for number, statements in enumerate(SCHEMA[version:], start=version + 1):
            # One transaction per version: a crash cannot leave a half-applied schema.
            await db.executescript(f"BEGIN; {statements}; PRAGMA user_version = {number}; COMMIT;")
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    # -- jobs -----------------------------------------------------------------------------

    async def create_job(
        self,
        project: str,
        action: JobAction,
        *,
        origin: JobOrigin = JobOrigin.API,
        params: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        dedupe_within: float | None = None,
        idempotency_key: str | None = None,
        parent: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Record a job. With keys, an existing job for the same keys that has not failed is
        returned instead (created is False): repeated deliveries run once. `dedupe_within`
        seconds, if given, bound how far back the dedupe key counts."""
        async with self._write_lock:
            if dedupe_key or idempotency_key:
                since = now(timedelta(seconds=dedupe_within)) if dedupe_within is not None else ""
                rows = await self._rows(
                    "SELECT * FROM jobs WHERE ((dedupe_key = ? AND created_at > ?)"
                    " OR idempotency_key = ?) AND state != ? ORDER BY created_at DESC LIMIT 1",
                    (dedupe_key, since, idempotency_key, str(JobState.FAILED)),
                )
                if rows:
                    return _job(rows[0]), False
            job = JobRecord(
                uuid.uuid4().hex, project, action, JobState.QUEUED, now(),
                origin=origin, params=params or {}, parent=parent,
            )  # fmt: skip
            await self.db.execute(
                "INSERT INTO jobs (id, project, action, state, created_at, origin, params,"
                " dedupe_key, idempotency_key, parent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id, job.project, str(job.action), str(job.state), job.created_at,
                    str(origin), json.dumps(job.params), dedupe_key, idempotency_key, parent,
                ),
            )  # fmt: skip
            await self.db.commit()
            return job, True

    async def list_jobs(
        self, *, project: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[JobRecord]:
        clauses, values = [], []
        if project is not None:
            clauses.append("project = ?")
            values.append(project)
        if state is not None:
            clauses.append("state = ?")
            values.append(state)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._rows(
            f"SELECT * FROM jobs {where} ORDER BY created_at DESC LIMIT ?", (*values, limit)
        )
        return [_job(row) for row in rows]

    async def last_jobs(self) -> dict[str, JobRecord]:
        """The newest finished update or delete of each project."""
        rows = await self._rows(
            "SELECT *, MAX(finished_at) FROM jobs WHERE action IN (?, ?) AND state IN (?, ?)"
            " GROUP BY project",
            (str(JobAction.UPDATE), str(JobAction.DELETE),
             str(JobState.SUCCEEDED), str(JobState.FAILED)),
        )  # fmt: skip
        return {row["project"]: _job(row) for row in rows}

    async def coalesce(self, job_id: str, covered_by: str) -> None:
        await self._write(
            "UPDATE jobs SET state = ?, covered_by = ?, finished_at = ? WHERE id = ?",
            (str(JobState.COALESCED), covered_by, now(), job_id),
        )

    async def covers_others(self, job_id: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM jobs WHERE covered_by = ? LIMIT 1", (job_id,)))

    async def delete_job(self, job_id: str) -> None:
        await self._write("DELETE FROM jobs WHERE id = ?", (job_id,))

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    async def unfinished_jobs(self) -> list[JobRecord]:
        rows = await self._rows(
            "SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY created_at, rowid",
            (str(JobState.QUEUED), str(JobState.RUNNING)),
        )
        return [_job(row) for row in rows]

    async def mark_running(self, job_id: str) -> None:
        await self._write(
            "UPDATE jobs SET state = ?, started_at = ? WHERE id = ?",
            (str(JobState.RUNNING), now(), job_id),
        )

    async def finish_job(
        self,
        job_id: str,
        state: JobState,
        commit: str | None,
        notebooks: list[NotebookOutcome],
        error: JobError | None,
        result: dict[str, Any] | None = None,
    ) -> None:
        await self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, commit_sha = ?, notebooks = ?, error = ?,"
            " result = ? WHERE id = ?",
            (
                str(state),
                now(),
                commit,
                json.dumps([_outcome_json(n) for n in notebooks]),
                json.dumps(dataclasses.asdict(error)) if error else None,
                json.dumps(result or {}),
                job_id,
            ),
        )

    async def prune_jobs(self, finished_before: str) -> int:
        """Forget finished jobs (and their logs) older than the given time."""
        return await self._write(
            "DELETE FROM jobs WHERE state IN (?, ?, ?) AND finished_at < ?",
            (*map(str, FINISHED), finished_before),
        )

    async def append_log(self, job_id: str, lines: list[LogLine]) -> None:
        if not lines:
            return
        async with self._write_lock:
            # Lines numbered by whoever wrote them (a running job's) need no look-up.
            unnumbered = any(line.seq is None for line in lines)
            last = await self.last_log_seq(job_id) if unnumbered else 0
            await self.db.executemany(
                "INSERT INTO job_log (job_id, seq, at, phase, notebook, message, output)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        job_id,
                        line.seq if line.seq is not None else last + i,
                        line.at,
                        str(line.event.phase),
                        line.event.notebook,
                        line.event.message,
                        int(line.event.output),
                    )
                    for i, line in enumerate(lines, start=1)
                ],
            )
            await self.db.commit()

    async def last_log_seq(self, job_id: str) -> int:
        rows = await self._rows(
            "SELECT COALESCE(MAX(seq), 0) FROM job_log WHERE job_id = ?", (job_id,)
        )
        return int(rows[0][0])

    async def job_log(self, job_id: str, limit: int = 5000, after: int = 0) -> list[LogLine]:
        """The last `limit` lines of a job's log after sequence number `after`, in order."""
        rows = await self._rows(
            "SELECT seq, at, phase, notebook, message, output FROM"
            " (SELECT * FROM job_log WHERE job_id = ? AND seq > ? ORDER BY seq DESC LIMIT ?)"
            " ORDER BY seq",
            (job_id, after, limit),
        )
        return [
            LogLine(
                row["at"],
                ProgressEvent(
                    Phase(row["phase"]), row["message"], row["notebook"], bool(row["output"])
                ),
                row["seq"],
            )
            for row in rows
        ]

    # -- users' servers ------------------------------------------------------------------------

    async def add_server(self, server: ServerRecord, limit: int | None = None) -> bool:
        """Record a server, in place of a failed one of that name, if its owner has fewer
        than `limit` others: checked and taken in one statement, so requests side by side
        never get past the limit, nor start one server twice. False when it was not added
        (the name is taken by a server that has not failed, or the limit is reached)."""
        changed = await self._write(
            "INSERT OR REPLACE INTO servers (name, user_id, username, namespace, project, branch,"
            " commit_sha, notebook, image, options, state, message, url, created_at, updated_at,"
            " gitlab_project_id, repository, step, warnings, volume)"
            " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM servers WHERE name = ? AND state != ?)"
            " AND (SELECT COUNT(*) FROM servers WHERE user_id = ? AND name != ?) < ?",
            (
                server.name, server.user_id, server.username, server.namespace, server.project,
                server.branch, server.commit_sha, server.notebook, server.image,
                json.dumps(server.options), str(server.state), server.message, server.url,
                server.created_at, server.updated_at,
                server.gitlab_project_id, server.repository, server.step,
                json.dumps(server.warnings), server.volume,
                server.name, str(ServerState.FAILED),
                server.user_id, server.name, 2**62 if limit is None else limit,
            ),
        )  # fmt: skip
        return changed > 0

    async def replace_failed_server(self, name: str) -> bool:
        """Mark a server whose container died as failed, so a new start may take its place;
        False when another request got there first."""
        changed = await self._write(
            "UPDATE servers SET state = ?, updated_at = ? WHERE name = ? AND state = ?",
            (str(ServerState.FAILED), now(), name, str(ServerState.RUNNING)),
        )
        return changed > 0

    async def set_server_state(
        self, name: str, state: ServerState, message: str = "", step: str | None = None
    ) -> None:
        """The server's state and what it says; `step`, when given, is the launch step now
        under way (or, for a failure, the one that failed)."""
        if step is None:
            await self._write(
                "UPDATE servers SET state = ?, message = ?, updated_at = ? WHERE name = ?",
                (str(state), message, now(), name),
            )
            return
        await self._write(
            "UPDATE servers SET state = ?, message = ?, step = ?, updated_at = ? WHERE name = ?",
            (str(state), message, step, now(), name),
        )

    async def get_server(self, name: str) -> ServerRecord | None:
        rows = await self._rows("SELECT * FROM servers WHERE name = ?", (name,))
        return _server(rows[0]) if rows else None

    async def servers(self, user_id: int | None = None) -> list[ServerRecord]:
        if user_id is None:
            rows = await self._rows("SELECT * FROM servers ORDER BY created_at")
        else:
            rows = await self._rows(
                "SELECT * FROM servers WHERE user_id = ? ORDER BY created_at", (user_id,)
            )
        return [_server(row) for row in rows]

    async def delete_server(self, name: str) -> None:
        await self._write("DELETE FROM servers WHERE name = ?", (name,))

    # -- work areas -------------------------------------------------------------------------

    async def use_volume(self, volume: WorkVolume) -> None:
        """Record a work area, or that a server starts with it now."""
        await self._write(
            "INSERT INTO volumes (name, user_id, username, namespace, project, node,"
            " created_at, used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at,"
            " username = excluded.username",
            (
                volume.name, volume.user_id, volume.username, volume.namespace,
                volume.project, volume.node, volume.created_at, volume.used_at,
            ),
        )  # fmt: skip

    async def set_volume_node(self, name: str, node: str) -> None:
        await self._write("UPDATE volumes SET node = ? WHERE name = ?", (node, name))

    async def get_volume(self, name: str) -> WorkVolume | None:
        rows = await self._rows("SELECT * FROM volumes WHERE name = ?", (name,))
        return _volume(rows[0]) if rows else None

    async def volumes(self, user_id: int | None = None) -> list[WorkVolume]:
        if user_id is None:
            rows = await self._rows("SELECT * FROM volumes ORDER BY name")
        else:
            query = "SELECT * FROM volumes WHERE user_id = ? ORDER BY name"
            rows = await self._rows(query, (user_id,))
        return [_volume(row) for row in rows]

    async def delete_volume(self, name: str) -> None:
        await self._write("DELETE FROM volumes WHERE name = ?", (name,))

    # -- sessions ---------------------------------------------------------------------------

    async def revoke_session(self, sid: str, expires: float) -> None:
        await self._write(
            "INSERT OR REPLACE INTO revoked_sessions (sid, expires) VALUES (?, ?)", (sid, expires)
        )

    async def revoked_sessions(self, now: float) -> dict[str, float]:
        """Sessions taken back that would still be valid at `now` (the others are forgotten)."""
        await self._write("DELETE FROM revoked_sessions WHERE expires <= ?", (now,))
        rows = await self._rows("SELECT sid, expires FROM revoked_sessions")
        return {row["sid"]: float(row["expires"]) for row in rows}

    # -- published notebooks ----------------------------------------------------------------

    async def replace_project(self, project: str, outcomes: list[NotebookOutcome]) -> bool:
        """The project's published notebooks are exactly these (removed ones are dropped).
        Returns whether that changed the records."""
        rows = sorted(
            (o.path, json.dumps({**_outcome_json(o), "log": []}))
            for o in outcomes
            if o.state is not NotebookState.REMOVED
        )
        async with self._write_lock:
            stored = await self.db.execute_fetchall(
                "SELECT path, record FROM notebooks WHERE project = ? ORDER BY path", (project,)
            )
            if [(row["path"], row["record"]) for row in stored] == rows:
                return False
            await self.db.execute("DELETE FROM notebooks WHERE project = ?", (project,))
            await self.db.executemany(
                "INSERT INTO notebooks (project, path, record, updated_at) VALUES (?, ?, ?, ?)",
                [(project, path, record, now()) for path, record in rows],
            )
            await self.db.commit()
            return True

    async def published(self, project: str | None = None) -> list[NotebookOutcome]:
        if project is None:
            rows = await self._rows("SELECT record FROM notebooks ORDER BY project, path")
        else:
            rows = await self._rows(
                "SELECT record FROM notebooks WHERE project = ? ORDER BY path", (project,)
            )
        return [_outcome(json.loads(row["record"])) for row in rows]

    # -- statements --------------------------------------------------------------------------

    async def _rows(self, sql: str, values: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        # Executed and fetched in one step on the connection's thread: no other coroutine's
        # statement or commit can come between.
        return list(await self.db.execute_fetchall(sql, values))

    async def _write(self, sql: str, values: tuple[Any, ...]) -> int:
        """Run one changing statement and commit it; returns the number of rows it changed."""
        async with self._write_lock:
            cursor = await self.db.execute(sql, values)
            await self.db.commit()
            return cursor.rowcount


def _job(row: aiosqlite.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        project=row["project"],
        action=JobAction(row["action"]),
        state=JobState(row["state"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        commit=row["commit_sha"],
        notebooks=[_outcome(n) for n in json.loads(row["notebooks"])],
        error=_error(json.loads(row["error"])) if row["error"] else None,
        origin=JobOrigin(row["origin"]),
        params=json.loads(row["params"]),
        result=json.loads(row["result"]),
        covered_by=row["covered_by"],
        parent=row["parent"],
    )


def _server(row: aiosqlite.Row) -> ServerRecord:
    return ServerRecord(
        name=row["name"],
        user_id=row["user_id"],
        username=row["username"],
        namespace=row["namespace"],
        project=row["project"],
        branch=row["branch"],
        commit_sha=row["commit_sha"],
        notebook=row["notebook"],
        image=row["image"],
        options=json.loads(row["options"]),
        state=ServerState(row["state"]),
        message=row["message"],
        url=row["url"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        gitlab_project_id=row["gitlab_project_id"],
        repository=row["repository"],
        step=row["step"],
        warnings=json.loads(row["warnings"]),
        volume=row["volume"],
    )


def _volume(row: aiosqlite.Row) -> WorkVolume:
    return WorkVolume(
        name=row["name"],
        user_id=row["user_id"],
        username=row["username"],
        namespace=row["namespace"],
        project=row["project"],
        created_at=row["created_at"],
        used_at=row["used_at"],
        node=row["node"],
    )


# How outcomes and errors are kept in the rows (JSON; written by earlier versions too).


def _outcome_json(outcome: NotebookOutcome) -> dict[str, Any]:
    return {
        "name": outcome.path,
        "project": outcome.project,
        "url": outcome.url,
        "state": str(outcome.state),
        "action": str(outcome.action),
        "image": outcome.image,
        "commit": outcome.commit,
        "reason": outcome.reason or None,
        "message": outcome.message or None,
        "log": outcome.log,
    }


def _outcome(data: dict[str, Any]) -> NotebookOutcome:
    return NotebookOutcome(
        project=data["project"],
        path=data["name"],
        state=NotebookState(data["state"]),
        action=NotebookAction(data["action"]),
        url=data.get("url") or "",
        image=data.get("image") or "",
        commit=data.get("commit") or "",
        reason=data.get("reason") or "",
        message=data.get("message") or "",
        log=list(data.get("log") or []),
    )


def _error(data: dict[str, Any]) -> JobError:
    return JobError(
        str(data.get("code", "internal_error")),
        int(data.get("status", 500)),
        str(data.get("message", "the job failed")),
        data.get("detail"),
    )
