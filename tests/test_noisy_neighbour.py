"""One account floods a model of the production server (gunicorn.conf.py, with
its fair worker and the per-account limits) from 40 connections; another
account's requests to the same model are served beside the flood, not behind it.

The measure is the order of events, not time: how many of the flood's requests
are answered while one of the quiet account's waits. First come first served
(gunicorn's own thread pool, a first-in first-out batcher queue), the quiet
request waits behind the flood's backlog: some 30 of its answers. Shared fairly,
it waits for the pass in progress and a pass of its own: a few.
"""

import http.client
import json
import os
import threading

import requests

from core.database import Database
from core.keys import create_key

from .gunicorn import production_server

FLOOD_CONNECTIONS = 40
QUIET_REQUESTS = 15
FLOOD_SENTENCES = [f"the flood's sentence number {n} about phones and prices" for n in range(12)]


class Flood:
    """Connections sending 12-sentence requests back to back, as many as it can."""

    def __init__(self, port: int, key: str):
        self.port, self.key = port, key
        self.answered = 0
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(FLOOD_CONNECTIONS)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        body = json.dumps({"text": FLOOD_SENTENCES})
        while not self._stop.is_set():
            try:
                conn.request("POST", "/text-vectorisation", body=body,
                             headers={"x-api-key": self.key, "content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                status = 0
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.answered += status == 200


def test_a_flooding_account_does_not_starve_another_on_the_same_model(tmp_path):
    with production_server(tmp_path, INFER_WORKERS="1", INFER_THREADS="8", INFER_ACCOUNT_MAX_IN_FLIGHT="4",
                           INFER_PRELOAD_MODELS="text-vectorisation:english") as server:
        quiet_key = server.printed_keys()[0]
        database = Database("sqlite:///" + os.path.join(server.folder, "data", "infer.db"))
        with database.sessions() as session:
            noisy_key = create_key(session, "noisy")[1]
        database.engine.dispose()

        quiet = requests.Session()
        with Flood(server.port, noisy_key) as flood:
            deadline_answers = 3 * FLOOD_CONNECTIONS
            while flood.answered < deadline_answers:  # the flood is established: its backlog is there
                assert server.process.poll() is None
                threading.Event().wait(0.05)
            waited_behind, statuses = [], []
            for n in range(QUIET_REQUESTS):
                before = flood.answered
                response = quiet.post(server.url + "/text-vectorisation", json={"text": f"quiet sentence {n}"},
                                      headers={"x-api-key": quiet_key}, timeout=120)
                waited_behind.append(flood.answered - before)
                statuses.append(response.status_code)
            health = requests.get(server.url + "/healthz", timeout=60)
            flood_answered = flood.answered

    assert statuses == [200] * QUIET_REQUESTS
    assert health.status_code == 200
    # A few of the flood's answers per quiet request (the pass in progress), never its backlog.
    assert max(waited_behind) <= 10, waited_behind
    assert flood_answered > deadline_answers  # and the flood was served too, at its share
