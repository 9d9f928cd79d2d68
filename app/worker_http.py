"""A queue worker's /healthz and /metrics, on a port of its own (INFER_WORKER_HEALTH_PORT).

A worker serves no HTTP otherwise, and needs no Flask for this: a standard
library server on a daemon thread, beside RQ's loop in the main thread. /healthz
is liveness: the process answers, whatever the database or Redis do (an outage
must not get every worker restarted; RQ waits for Redis to come back). /metrics
is the same exposition as the web server's: this worker's run durations and
prediction lag, and the whole service's queue depth and waiting work, computed
when scraped (web/work_metrics.py).
"""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from web.metrics import exposition

log = logging.getLogger(__name__)


def serve_worker_http(port: int, collector, describe, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start serving on `port` (0 picks a free one: server.server_address says which);
    `describe()` is what /healthz reports besides "ok"."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(200, "application/json", json.dumps({"status": "ok", **describe()}).encode())
            elif path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, exposition([collector]))
            else:
                self._answer(404, "application/json",
                             json.dumps({"message": "not found: this port serves /healthz and /metrics",
                                         "code": "unknown_url"}).encode())

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # a probe every few seconds would flood the log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    log.info("worker health and metrics on port %s", server.server_address[1])
    return server
