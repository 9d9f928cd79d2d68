"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

from app import create_app

# gunicorn.conf.py starts the build and training threads in each worker (post_worker_init);
# `flask --app wsgi keys ...` imports this module too and must not build or train.
app = create_app(bootstrap_key=False, start_builder=False)
