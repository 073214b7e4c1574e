"""The course's module path for the Wikipedia stage (`location: workers.WikiWorker`): the shipped classes."""

from __future__ import annotations

from workers.wiki_worker import WikiWorker, WikiWorkerMasterScheduler

__all__ = ["WikiWorker", "WikiWorkerMasterScheduler"]
