"""Where a group's instances run: threads, asyncio tasks, worker processes (the parent's side: processes, unit,
unit_books, unit_feed, unit_reports; the child's: child, outbox), a course-style thread class's own loop, and the
choice between them. Imports core.run and below."""
