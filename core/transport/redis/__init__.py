"""Queues in Redis streams: the run's client (client), who takes part in it (members), its Lua scripts; a queue
(queue) over its stream and keys (stream), its writer (writer), its fetcher (fetcher) and the entries it holds
(leases); items as JSON (encoding), the settler (settle), and the run's ends across processes (ends)."""
