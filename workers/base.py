"""The worker API, where users' existing workers import it from: `from workers.base import Worker`."""

from __future__ import annotations

from core.api.worker import BatchWorker, ItemError, Worker

__all__ = ["BatchWorker", "ItemError", "Worker"]
