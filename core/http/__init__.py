"""HTTP for workers: the retry and rate policy, endpoints, the requests and aiohttp clients, asyncio deadlines.
Imports core.pipeline, core.api and core.base."""
