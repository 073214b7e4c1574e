"""Storage for sinks: database URLs, the table policy, PostgreSQL and SQLAlchemy. Imports core.pipeline,
core.api and core.base."""
