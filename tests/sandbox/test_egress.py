"""The install network: through its unix socket the proxy reaches the allowed hosts
(CONNECT tunnels and plain HTTP) and refuses every other host and port."""

import http.server
import socket
import threading

import pytest

from sandbox.egress import EgressProxy, parse_allowed


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"path={self.path} host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    started = []
    for _ in range(2):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield [server.server_address[1] for server in started]
    for server in started:
        server.shutdown()


@pytest.fixture
def proxy(tmp_path, servers):
    allowed_port, _ = servers
    proxy = EgressProxy(str(tmp_path / "egress.sock"), parse_allowed(f"pypi.org, 127.0.0.1:{allowed_port}"))
    yield proxy
    proxy.close()


def _ask(proxy, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(proxy.socket_path)
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
            if request.startswith(b"CONNECT") and answer.endswith(b"\r\n\r\n") and b" 200 " in answer:
                client.sendall(b"GET /through HTTP/1.1\r\nHost: tunnel\r\nConnection: close\r\n\r\n")
                request = b""
        return answer


def test_allowed_entries_default_to_https_and_take_a_port():
    assert parse_allowed("pypi.org, Mirror.Local:8080,") == {("pypi.org", 443), ("mirror.local", 8080)}


def test_a_tunnel_to_an_allowed_host_works(proxy, servers):
    answer = _ask(proxy, f"CONNECT 127.0.0.1:{servers[0]} HTTP/1.1\r\n\r\n".encode())

    assert answer.startswith(b"HTTP/1.1 200 Connection established")
    assert b"path=/through host=tunnel" in answer


def test_plain_http_to_an_allowed_host_is_forwarded_as_the_origin_expects(proxy, servers):
    answer = _ask(proxy, f"GET http://127.0.0.1:{servers[0]}/simple/x/?a=1 HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{servers[0]}\r\nProxy-Connection: keep-alive\r\n\r\n".encode())

    assert answer.startswith(b"HTTP/1.0 200") and b"path=/simple/x/?a=1" in answer


@pytest.mark.parametrize("request_line", [
    "CONNECT 127.0.0.1:{other} HTTP/1.1",  # another port of an allowed address
    "CONNECT 169.254.169.254:80 HTTP/1.1",  # a cloud metadata service
    "CONNECT pypi.org:22 HTTP/1.1",  # an allowed host on another port
    "GET http://127.0.0.1:{other}/ HTTP/1.1",
])
def test_everything_else_is_refused_and_recorded(proxy, servers, request_line):
    line = request_line.format(other=servers[1])

    answer = _ask(proxy, f"{line}\r\nHost: x\r\n\r\n".encode())

    assert answer.startswith(b"HTTP/1.1 403") and b"INFER_SANDBOX_INSTALL_HOSTS" in answer
    assert len(proxy.refused) == 1
