"""The database as the web layer uses it: one session per request.

The process's Database (core/database.py) lives in the app's extensions; a
request's session is made on first use and closed when the app context ends.
"""

from flask import current_app, g

from core.database import Database


def init_app(app, database: Database) -> Database:
    app.extensions["db"] = database
    app.teardown_appcontext(_close_request_session)
    return database


def get_db() -> Database:
    return current_app.extensions["db"]


def session():
    """The current request's database session, created on first use."""
    if "db_session" not in g:
        g.db_session = get_db().sessions()
    return g.db_session


def _close_request_session(_exc):
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
