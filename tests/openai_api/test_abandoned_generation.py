"""A generation nobody waits for stops at its next token (issue 22, part 5): a
non-streamed client that leaves, a deadline (REQUEST_TIMEOUT_S) that passes, a
stream that runs past it. Each is played as one account (alice) against another
(bob) over real HTTP, on a tiny random-weight language model.

Evidence, never timing: the service's count of generated tokens by finish
reason (infer_generated_tokens_total), which also shows the work a stopped
generation did, and the order of events. To know where a generation was when
its client left, without guessing at speeds, a Gate holds the model at one
forward pass until the request's GenerationControl has been told to stop (it
instruments the real model with a forward hook; it decides nothing itself).
The generation must then end at the next token: fewer than HOLD_AT tokens of
MAX_TOKENS.

A real gunicorn (tests/gunicorn.py) in front of the real SmolLM2, directly and
through the shipped nginx, checks that its socket shows a client that left;
werkzeug's server does the same for the tiny-model tests.
"""

import json
import re
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import until
from web.client_gone import client_socket, has_gone

MODEL = "gpt2-large"  # the tiny causal LM stands in for it (tests/conftest.py STAND_INS)
MAX_TOKENS = 200
HOLD_AT = 4  # the forward pass the Gate holds: tokens 1..3 are out when the client leaves
CHAT = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]


class Gate:
    """Instruments a loaded model: counts its forward passes and holds the first
    generation at pass `hold_at` until its request was told to stop (client gone,
    deadline), for at most `patience_s` (then it lets it go, and the test fails)."""

    def __init__(self, served, task: str, hold_at: int = HOLD_AT, patience_s: float = 60):
        self.controls = []
        self.passes = 0
        self.hold_at = hold_at
        self.patience_s = patience_s
        runner = served.runners[task]  # wrapped before the first request creates its batcher

        def recording(items):
            self.controls.extend(item.get("control") if isinstance(item, dict) else item.control for item in items)
            return runner(items)

        served.runners[task] = recording
        served.model.register_forward_pre_hook(self._pass)

    def _pass(self, module, args):
        self.passes += 1
        if self.passes == self.hold_at:
            try:
                until(lambda: self.controls[0].flagged is not None, timeout_s=self.patience_s)
            except AssertionError:
                pass  # the test's own assertions say what went wrong

    @property
    def first_flag(self):
        return self.controls[0].flagged if self.controls else None


def gated(service, runner: str, model: str = MODEL, **kwargs) -> Gate:
    """A Gate on `runner` ("completions": the /v1 routes; "text-generation") of `model`."""
    return Gate(service.app.extensions["models"].get("text-generation", model), runner, **kwargs)


def generated_tokens(url: str, finish_reason: str, model: str = MODEL) -> float:
    text = requests.get(url + "/metrics", timeout=30).text
    pattern = (rf'^infer_generated_tokens_total{{[^}}]*finish_reason="{finish_reason}"[^}}]*'
               rf'model="{re.escape(model)}"[^}}]*}} (\S+)$')
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def decoding_steps(url: str, model: str) -> float:
    """Decoding steps the model's running generation batch has taken (infer_batch_size_count)."""
    text = requests.get(url + "/metrics", timeout=30).text
    pattern = rf'^infer_batch_size_count{{model="{re.escape(model)}",task="generation-step"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def answered(url: str, endpoint: str, status: int) -> float:
    """How many requests to `endpoint` were answered `status` (infer_requests_total)."""
    text = requests.get(url + "/metrics", timeout=30).text
    pattern = (rf'^infer_requests_total{{endpoint="{re.escape(endpoint)}",method="POST",'
               rf'status="{status}"}} (\S+)$')
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class Counts:
    """Deltas of the generated-token counter since it was made."""

    REASONS = ("stop", "length", "cancelled", "deadline")

    def __init__(self, url: str, model: str = MODEL):
        self.url, self.model = url, model
        self.before = {reason: generated_tokens(url, reason, model) for reason in self.REASONS}

    def __getitem__(self, reason: str) -> float:
        return generated_tokens(self.url, reason, self.model) - self.before[reason]


def send_and_hold(url: str, path: str, body: dict, key: str) -> socket.socket:
    """POST `body` on a raw connection and return it unread: the test closes it to leave."""
    address = urlsplit(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=60)
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    sock.sendall(head.encode() + payload)
    return sock


def request_threads() -> list[threading.Thread]:
    """werkzeug's threads serving a connection (its threaded server starts one per connection)."""
    return [thread for thread in threading.enumerate() if "process_request" in thread.name]


def assert_service_free(service, threads_before: int) -> None:
    """No request thread is left holding a connection (none more than before the
    test), and /healthz answers."""
    until(lambda: len(request_threads()) <= threads_before, timeout_s=60)
    assert requests.get(service.url + "/healthz", timeout=30).status_code == 200


def chat(service, key: str, **body):
    """One chat through OpenAI's SDK, its connection closed after (no keep-alive thread left)."""
    with service.sdk(key) as client:
        return client.chat.completions.create(model=MODEL, messages=CHAT, temperature=0, **body)


@pytest.fixture
def service(serve, tiny_model_dir):
    return serve(MODEL_DIR=tiny_model_dir, GEN_MAX_NEW_TOKENS=MAX_TOKENS, CLIENT_GONE_CHECK_S=0.02)


# ---- noticing a gone client on its socket ----------------------------------------------


@pytest.fixture
def tcp_pair():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _address = listener.accept()
    listener.close()
    yield client, server
    client.close()
    server.close()


def test_an_open_connection_is_not_gone_even_with_a_pipelined_request_waiting(tcp_pair):
    client, server = tcp_pair
    assert not has_gone(server)
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # a keep-alive client's next request
    until(lambda: server.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    assert not has_gone(server)
    assert server.recv(64, socket.MSG_PEEK) .startswith(b"GET /healthz")  # nothing was consumed


def test_a_closed_connection_is_gone_even_behind_pipelined_data(tcp_pair):
    client, server = tcp_pair
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    client.close()
    until(lambda: has_gone(server))


def test_a_reset_connection_is_gone(tcp_pair):
    client, server = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # linger 0: a reset, not a FIN
    until(lambda: has_gone(server))


def test_a_unix_socket_is_watched_by_peeking():
    mine, theirs = socket.socketpair()
    try:
        theirs.sendall(b"pipelined")
        assert not has_gone(mine)
        theirs.close()
        assert not has_gone(mine)  # data still unread: not taken for a close ...
        mine.recv(64)
        assert has_gone(mine)  # ... which shows once it is read
    finally:
        mine.close()


def test_the_socket_is_found_where_gunicorn_and_werkzeug_put_it(tcp_pair):
    _client, server = tcp_pair
    assert client_socket({"gunicorn.socket": server}) is server
    assert client_socket({"werkzeug.socket": server}) is server
    assert client_socket({"wsgi.input": object()}) is None


# ---- the attacks over HTTP -----------------------------------------------------------------


def test_a_non_streamed_chat_whose_client_left_stops_and_the_next_account_is_served(service):
    gate = gated(service, "completions")
    alice, bob = service.key("alice"), service.key("bob")
    counts, threads_before = Counts(service.url), len(request_threads())

    left = send_and_hold(service.url, "/v1/chat/completions",
                         {"model": MODEL, "messages": CHAT, "max_tokens": MAX_TOKENS, "temperature": 0}, alice)
    until(lambda: gate.passes >= HOLD_AT, timeout_s=60)  # alice's generation is under way ...
    left.close()  # ... and her client gives up (an SDK's timeout)

    reply = chat(service, bob, max_tokens=2)

    assert reply.usage.completion_tokens == 2
    assert gate.first_flag == "cancelled"
    # By the time bob was answered, alice's generation had ended, HOLD_AT - 1 tokens in, not MAX_TOKENS:
    assert 0 < counts["cancelled"] < HOLD_AT
    assert counts["length"] == 2  # bob's; alice's never ran to its length
    assert counts["stop"] == 0
    assert_service_free(service, threads_before)


def test_a_non_streamed_chat_past_its_deadline_is_stopped_before_its_504(serve, tiny_model_dir):
    service = serve(MODEL_DIR=tiny_model_dir, GEN_MAX_NEW_TOKENS=MAX_TOKENS, REQUEST_TIMEOUT_S=2.0)
    gate = gated(service, "completions")  # held until the deadline stops it: the 504 cannot come first
    alice, bob = service.key("alice"), service.key("bob")
    counts, threads_before = Counts(service.url), len(request_threads())

    late = service.post("/v1/chat/completions",
                        {"model": MODEL, "messages": CHAT, "max_tokens": MAX_TOKENS, "temperature": 0}, alice)

    assert late.status_code == 504
    assert "INFER_REQUEST_TIMEOUT_S" in late.json()["error"]["message"]
    assert "stopped" in late.json()["error"]["message"]
    assert gate.first_flag == "deadline"  # flagged before the 504 was sent
    reply = service.post("/v1/completions", {"model": MODEL, "prompt": "Hello", "max_tokens": 1}, bob)
    assert reply.status_code == 200
    assert 0 < counts["deadline"] < HOLD_AT + 1
    assert counts["length"] == 1  # bob's token only
    assert_service_free(service, threads_before)


def test_a_stream_past_its_deadline_ends_with_a_504_event_after_its_text(serve, tiny_model_dir):
    service = serve(MODEL_DIR=tiny_model_dir, GEN_MAX_NEW_TOKENS=MAX_TOKENS, REQUEST_TIMEOUT_S=2.0)
    gated(service, "completions")
    alice = service.key("alice")
    counts, threads_before = Counts(service.url), len(request_threads())

    response = service.post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "max_tokens": MAX_TOKENS,
                                                     "temperature": 0, "stream": True}, alice, stream=True)
    events = [json.loads(line[6:]) for line in response.iter_lines(decode_unicode=True)
              if line.startswith("data: {")]

    assert response.status_code == 200
    assert any(event.get("choices") and event["choices"][0]["delta"].get("content") for event in events[:-1])
    assert all(event["choices"][0]["finish_reason"] is None for event in events[:-1])  # no choice "finished"
    assert events[-1]["error"]["code"] is None and "INFER_REQUEST_TIMEOUT_S" in events[-1]["error"]["message"]
    assert 0 < counts["deadline"] < HOLD_AT + 1
    assert counts["length"] == 0
    assert_service_free(service, threads_before)


def test_an_abandoned_request_still_queued_never_runs(service):
    """Alice's first chat holds the model (the Gate); her second one queues behind it
    and its client leaves: it is dropped unrun, and only bob's request runs after."""
    gate = gated(service, "completions")
    alice, bob = service.key("alice"), service.key("bob")
    counts, threads_before = Counts(service.url), len(request_threads())
    body = {"model": MODEL, "messages": CHAT, "max_tokens": MAX_TOKENS, "temperature": 0}
    holding = send_and_hold(service.url, "/v1/chat/completions", body, alice)
    until(lambda: gate.passes >= HOLD_AT, timeout_s=60)
    batcher = service.app.extensions["models"].get("text-generation", MODEL)._batchers["completions"]
    closed_before = answered(service.url, "/v1/chat/completions", 499)
    queued = send_and_hold(service.url, "/v1/chat/completions", body, alice)
    until(lambda: batcher.queued() == 1, timeout_s=60)

    queued.close()
    # Its thread saw the client go and answered 499, while the model is still held by the first.
    until(lambda: answered(service.url, "/v1/chat/completions", 499) == closed_before + 1, timeout_s=60)
    holding.close()
    reply = chat(service, bob, max_tokens=2)

    assert reply.usage.completion_tokens == 2
    assert len(gate.controls) == 2  # alice's first chat and bob's: her queued one never reached the model
    assert 0 < counts["cancelled"] < HOLD_AT
    assert counts["length"] == 2
    assert_service_free(service, threads_before)


# ---- the production server -------------------------------------------------------------------

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_MAX_TOKENS = 400


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    from tests.gunicorn import production_server

    with production_server(tmp_path_factory.mktemp("abandoned"), INFER_WORKERS="1", INFER_THREADS="4",
                           INFER_GEN_MAX_NEW_TOKENS=str(SMOLLM2_MAX_TOKENS)) as server:
        [alice] = server.printed_keys()
        yield server, alice, server_cli_key(server, "bob")


@pytest.fixture(scope="module")
def nginx(gunicorn, tmp_path_factory):
    from tests.nginx import Nginx

    server, _alice, _bob = gunicorn
    with Nginx(str(tmp_path_factory.mktemp("nginx")), f"127.0.0.1:{server.port}") as proxy:
        yield proxy.url


def bob_waits_behind_alice(url: str, key: str) -> requests.Response:
    """Bob's stream: open once it shows that the model is busy (a ': waiting' comment
    while his request is queued) or has started on his text (batched with alice's)."""
    response = requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             stream=True, timeout=120, json={"model": SMOLLM2, "messages": CHAT, "temperature": 0,
                                                             "max_tokens": 3, "stream": True})
    assert response.status_code == 200
    return response


@pytest.mark.packaged_model
@pytest.mark.parametrize("through", ["gunicorn", "nginx"])
def test_on_the_production_server_a_non_streamed_client_that_left_stops_its_generation(request, gunicorn, through):
    server, alice, bob = gunicorn
    url = server.url if through == "gunicorn" else request.getfixturevalue("nginx")
    counts = Counts(server.url, SMOLLM2)

    steps_before = decoding_steps(server.url, SMOLLM2)
    left = send_and_hold(url, "/v1/chat/completions", {"model": SMOLLM2, "messages": CHAT, "temperature": 0,
                                                       "max_tokens": SMOLLM2_MAX_TOKENS}, alice)
    until(lambda: decoding_steps(server.url, SMOLLM2) > steps_before, timeout_s=60)  # alice's generation runs
    stream = bob_waits_behind_alice(url, bob)
    lines = stream.iter_lines(decode_unicode=True)
    for line in lines:  # until bob's request is in: queued, or decoding beside alice's
        if line.startswith(": waiting") or '"content":"' in line and '"content":""' not in line:
            break
    left.close()
    rest = [line for line in lines if line]  # events are separated by empty lines

    assert rest[-1] == "data: [DONE]"  # bob is served ...
    assert not any('"error"' in line for line in rest)
    assert counts["length"] == 3  # ... his 3 tokens; alice's generation never ran to its length
    # Bob's request joined alice's running batch and may end before her thread looks
    # at her connection again (INFER_CLIENT_GONE_CHECK_S): her sequence stops then.
    until(lambda: counts["cancelled"] > 0, timeout_s=60)
    assert counts["cancelled"] < SMOLLM2_MAX_TOKENS / 4
    assert requests.get(server.url + "/healthz", timeout=30).status_code == 200


def server_cli_key(server, account: str) -> str:
    """A key for another account, made with the service's own CLI on the server's database."""
    import os
    import subprocess
    import sys

    from tests.gunicorn import ROOT

    env = {**os.environ, "INFER_DATA_DIR": os.path.join(server.folder, "data")}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "keys", "create", "--account", account],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return re.search(r"ik_[A-Za-z0-9_-]+", result.stdout).group(0)
