"""Where a group's instances run: threads, asyncio tasks, worker processes (parent and child side), a
course-style thread class's own loop, and the choice between them. Imports core.run and below."""
