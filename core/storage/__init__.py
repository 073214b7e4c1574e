"""Storage for sinks, lowest first: url (a database URL read without SQLAlchemy), settings (which database the
environment names, and its driver), table (the table policy), base (what both databases share), postgres (PostgreSQL
through psycopg2), sqlalchemy_db (any other database through SQLAlchemy, imported only then) and database
(open_database, choosing between them). Imports core.pipeline, core.api and core.base."""
