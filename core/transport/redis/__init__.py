"""Queues in Redis streams: the run's client (client), its Lua scripts, the queue and its fetcher (queue), the
settler (settle) and the run's ends across processes (ends)."""
