"""A real HTTP server on 127.0.0.1 that webhook tests point the service at."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers the given statuses in turn."""

    def __init__(self, statuses=(200,)):
        self.calls: list[tuple[dict, bytes]] = []
        self.statuses = list(statuses)
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.calls.append((dict(self.headers), body))
                    status = receiver.statuses[min(len(receiver.calls), len(receiver.statuses)) - 1]
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?source=infer"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_calls(self, count: int, timeout_s: float = 30) -> list:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.calls) >= count, timeout_s), self.calls
            return list(self.calls)

    def close(self):
        self.server.shutdown()
