"""A WSGI app for the fair worker's tests (test_fair_worker.py): it answers with
the name of the thread that served the request."""

import os
import threading


def app(environ, start_response):
    body = threading.current_thread().name.encode()
    if environ.get("PATH_INFO") == "/file":  # a file's body: gunicorn sends it with sendfile
        path = environ["QUERY_STRING"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(os.path.getsize(path)))])
        return environ["wsgi.file_wrapper"](open(path, "rb"))
    if environ.get("PATH_INFO") == "/stream":  # no length: written as gunicorn writes it
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([body, b"."])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
