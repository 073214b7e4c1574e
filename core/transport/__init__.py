"""Queues: the interface every transport offers (base), the local bounded queue (local, over its store fifo) and
Redis streams (redis/). A transport never sees groups, ledgers or dead-letter files: they reach it as callbacks.
Imports core.pipeline, core.api and core.base."""
