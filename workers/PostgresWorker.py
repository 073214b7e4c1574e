"""The course's module path for the sink (`location: workers.PostgresWorker`): the shipped classes."""

from __future__ import annotations

from workers.postgres_worker import PostgresMasterScheduler, PostgresWorker

__all__ = ["PostgresMasterScheduler", "PostgresWorker"]
