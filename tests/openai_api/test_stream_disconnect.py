"""A streaming client that goes away stops its generation, on the production server
(gunicorn -c gunicorn.conf.py) and through the shipped nginx config in front of it.

The evidence is the service's own count of generated tokens by finish reason
(infer_generated_tokens_total): a stream whose client left ends "cancelled" after
a few tokens instead of running to its max_tokens (the next request on the same
model joins the running batch meanwhile and is answered). Reading the first pieces before the generation ends also proves the
stream is not buffered on the way (an nginx that buffered would deliver nothing
until the end, and nothing would be cancelled). Nothing about speed is asserted.
"""

import json
import re

import pytest
import requests

from tests.conftest import until
from tests.gunicorn import production_server
from tests.nginx import Nginx

MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 400
# Greedy SmolLM2 counts on and on here: a generation that only max_tokens ends.
COUNTING = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
PIECES_READ = 3

pytestmark = pytest.mark.packaged_model


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    with production_server(tmp_path_factory.mktemp("stream"), INFER_WORKERS="1", INFER_THREADS="4",
                           INFER_GEN_MAX_NEW_TOKENS=str(MAX_TOKENS)) as server:
        [key] = server.printed_keys()
        yield server.url, server.port, key


@pytest.fixture(scope="module")
def nginx(gunicorn, tmp_path_factory):
    _url, port, _key = gunicorn
    with Nginx(str(tmp_path_factory.mktemp("nginx")), f"127.0.0.1:{port}") as proxy:
        yield proxy.url


def generated_tokens(url: str, finish_reason: str) -> float:
    text = requests.get(url + "/metrics", timeout=30).text
    pattern = rf'^infer_generated_tokens_total{{[^}}]*finish_reason="{finish_reason}"[^}}]*model="{MODEL}"[^}}]*}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("through", ["gunicorn", "nginx"])
def test_a_client_leaving_mid_stream_stops_its_generation(request, gunicorn, through):
    metrics_url, _port, key = gunicorn
    url = metrics_url if through == "gunicorn" else request.getfixturevalue("nginx")
    headers = {"Authorization": f"Bearer {key}"}
    cancelled_before = generated_tokens(metrics_url, "cancelled")
    length_before = generated_tokens(metrics_url, "length")

    response = requests.post(url + "/v1/chat/completions", headers=headers, stream=True, timeout=120, json={
        "model": MODEL, "messages": COUNTING, "temperature": 0, "max_tokens": MAX_TOKENS, "stream": True})
    assert response.status_code == 200
    pieces = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: {"):
            delta = json.loads(line[6:])["choices"][0]["delta"]
            if delta.get("content"):
                pieces.append(delta["content"])
                if len(pieces) == PIECES_READ:
                    break
    response.close()  # the client goes away
    assert len(pieces) == PIECES_READ

    # The next request on the same model is answered (it joins the running batch beside
    # the stream's sequence until that one's next write fails and stops it).
    after = requests.post(url + "/v1/completions", headers=headers, timeout=120,
                          json={"model": MODEL, "prompt": "Hello", "max_tokens": 1})
    assert after.status_code == 200

    until(lambda: generated_tokens(metrics_url, "cancelled") > cancelled_before, timeout_s=60)
    cancelled = generated_tokens(metrics_url, "cancelled") - cancelled_before
    assert cancelled < MAX_TOKENS / 4, "the stream's generation ran on after its client left"
    assert generated_tokens(metrics_url, "length") - length_before == 1  # only the 1-token request ran to length
