"""Runs inside an install sandbox: pip install into the model's venv.

Standalone (only the standard library; no imports from the service). Started as
`python install_inside.py [--proxy-socket PATH] -- PIP ARGS...` with the model's
venv Python. With a proxy socket, the sandbox's only way out, it listens on the
sandbox's own loopback and relays each connection to that socket, where the
service's egress proxy lets through only the allowed package indexes; pip is
pointed at the relay as its HTTP(S) proxy.
"""

import os
import socket
import subprocess
import sys
import threading


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(listener: socket.socket, socket_path: str) -> None:
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(socket_path)
        except OSError:
            client.close()
            continue
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> int:
    separator = argv.index("--")
    options, pip_args = argv[:separator], argv[separator + 1:]
    env = dict(os.environ)
    if options[:1] == ["--proxy-socket"]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        threading.Thread(target=_relay, args=(listener, options[1]), daemon=True).start()
        proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
        env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy)
        env.pop("NO_PROXY", None)
        env.pop("no_proxy", None)
    return subprocess.run([sys.executable, "-m", "pip", *pip_args], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
