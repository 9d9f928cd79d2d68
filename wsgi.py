"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import sys

from app import create_app
from app.db_cli import loaded_for_db_command

# gunicorn.conf.py starts the build and training threads in each worker (post_worker_init);
# `flask --app wsgi keys ...` imports this module too and must not build or train.
# `flask --app wsgi db ...` imports it to find that command, which upgrades or
# reports the schema itself: the app must not refuse to load over it first.
app = create_app(bootstrap_key=False, start_builder=False, manage_schema=not loaded_for_db_command(sys.argv))
