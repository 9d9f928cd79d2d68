"""The documentation's walk-throughs, run as written, against the service as scripts/serve starts it.

The documentation is README.md and the site's pages in docs/, read in the order of
tests/documentation.py: the README, then the pages in mkdocs.yml's nav order.

(a) Every shell block that follows a `<!-- readme-test: NAME -->` marker runs, in the
documentation's order, in one bash session, as a user pastes them into one terminal (later
blocks use the KEY and the models earlier ones made). The server is gunicorn with
gunicorn.conf.py on an empty data dir, offline (HF_HUB_OFFLINE=1). What the test
changes, and nothing else (see `substituted` and `shell_environment`):

- `ik_...` becomes the first key, which the server's first start wrote to its data dir
  (`first-api-key`: its output is a log here, not a terminal, so it printed where, not the key);
- `127.0.0.1:8000` and `localhost:8000` become the test server's address;
- PATH starts with the checkout's .venv/bin (`pip` and `python` are the venv's, as in
  an activated venv), and INFER_DATA_DIR is the server's, so that the `flask` CLI
  works on the server's database as it does on ./data after scripts/serve;
- the keys block runs in the checkout (it calls .venv/bin/flask), every other block
  in a folder of its own (they write files: my-model.zip, reviews.csv, ...).

Each block must exit with no failing command (an ERR trap lists them) and print what
the documentation says it prints (CHECKS, one per block).

(b) Every http://127.0.0.1:8000/... URL in the prose of the README and of docs/ answers
as they say.

Both start gunicorn, so tests/conftest.py marks them slow; the check that the
documentation still marks the blocks named here, in this order, is quick.
"""

import json
import os
import queue
import re
import shlex
import subprocess
import threading
import time
import uuid

import pytest
import requests

from .documentation import documentation_files, read
from .gunicorn import ROOT, start_production_server

MARKER = re.compile(r"^<!-- readme-test: ([a-z0-9-]+) -->$")
# The blocks this test runs, in the documentation's order, with how long each may take on
# 2 busy cores (a training job, a first load of SmolLM2).
BLOCK_TIMEOUTS_S = {
    "quickstart": 300,
    "keys": 180,
    "openai": 600,
    "upload": 300,
    "improve-loop": 600,
    "train-text": 1200,
    "train-tabular": 600,
    "keep-training": 300,
    "prediction-url": 120,
    "async": 600,
    "usage": 120,
}
# Blocks that run in the checkout itself (they call .venv/bin/... by its relative path).
RUN_IN_CHECKOUT = {"keys"}


def marked_blocks(text: str) -> dict[str, str]:
    """{name: the shell block after its marker, unindented}: the indented code block
    that starts at the first indented line after the marker (blank lines inside it
    belong to it), as Markdown reads it."""
    lines = text.split("\n")
    blocks = {}
    for index, line in enumerate(lines):
        found = MARKER.match(line)
        if not found:
            continue
        assert found.group(1) not in blocks, f"two blocks are marked {found.group(1)!r}"
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        assert start < len(lines) and lines[start].startswith("    "), \
            f"the marker {found.group(1)!r} is not followed by an indented code block"
        end = start
        while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
            end += 1
        body = [line[4:] for line in lines[start:end]]
        while body and not body[-1].strip():
            body.pop()
        blocks[found.group(1)] = "\n".join(body) + "\n"
    return blocks


def documentation_blocks() -> dict[str, str]:
    """{name: block} of every documentation file, in the documentation's order."""
    blocks, found_in = {}, {}
    for path in documentation_files():
        for name, block in marked_blocks(read(path)).items():
            assert name not in blocks, f"two blocks are marked {name!r}: in {found_in[name]} and {path}"
            blocks[name], found_in[name] = block, path
    return blocks


def substituted(block: str, key: str, address: str) -> str:
    """The only changes made to a documentation block: the key and the server's address."""
    return block.replace("ik_...", key).replace("127.0.0.1:8000", address).replace("localhost:8000", address)


def json_values(output: str) -> list:
    """Every JSON object, list or string a block printed, in order (curl -s prints no
    newline after a body, so two bodies can share a line)."""
    decoder = json.JSONDecoder()
    values, position = [], 0
    while position < len(output):
        if output[position] in "{[\"":
            try:
                value, end = decoder.raw_decode(output, position)
            except ValueError:
                position += 1
                continue
            values.append(value)
            position = end
        else:
            position += 1
    return values


def dicts_with(values: list, key: str) -> list[dict]:
    return [value for value in values if isinstance(value, dict) and key in value]


class Shell:
    """One bash session, fed block after block as a user pastes them."""

    def __init__(self, environment: dict, scratch: str):
        self.scratch = scratch  # where the blocks' scripts are written
        self.process = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment,
                                        start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._send("set -o pipefail\n")

    def _read(self):
        for line in iter(self.process.stdout.readline, b""):
            self.lines.put(line.decode(errors="replace"))
        self.lines.put(None)

    def _send(self, text: str):
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def run(self, script: str, cwd: str, timeout_s: float) -> tuple[str, str]:
        """(what it printed, the commands that failed); the block runs from a file,
        with stdin from /dev/null, so that no command in it can read the next block."""
        token = f"readme-test-end-{uuid.uuid4().hex}"
        path = os.path.join(self.scratch, f"{token}.sh")
        with open(path, "w") as f:
            f.write(script)
        self._send(
            f"cd {shlex.quote(cwd)}\n"
            "__failed=''\n"
            "trap '__failed=\"$__failed line $LINENO: $BASH_COMMAND (exit $?);\"' ERR\n"
            f"source {shlex.quote(path)} < /dev/null\n"
            "trap - ERR\n"
            f"printf '\\n{token} %s\\n' \"$__failed\"\n"
        )
        printed = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                raise AssertionError(f"the block ran past {timeout_s} s; it printed:\n{''.join(printed)}")
            if line is None:
                raise AssertionError(f"bash exited; the block printed:\n{''.join(printed)}")
            if line.startswith(token):
                os.remove(path)
                return "".join(printed), line[len(token):].strip()
            printed.append(line)

    def close(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
            self.process.wait()


def shell_environment(server_data_dir: str) -> dict:
    environment = dict(os.environ)
    environment["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + environment.get("PATH", "")
    environment["INFER_DATA_DIR"] = server_data_dir
    return environment


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """A server as scripts/serve starts it (one worker: the test's cores are few),
    its printed key, and a shell that runs the documentation's blocks against it."""
    folder = tmp_path_factory.mktemp("readme-server")
    server = start_production_server(folder, INFER_WORKERS="1")
    shell = None
    try:
        server.wait_ready(timeout=600)
        keys = server.printed_keys()
        assert len(keys) == 1, server.log()
        shell = Shell(shell_environment(os.path.join(str(folder), "data")), str(tmp_path_factory.mktemp("readme-user")))
        yield {"server": server, "key": keys[0], "shell": shell, "blocks": documentation_blocks(),
               "results": {}}
    finally:
        if shell is not None:
            shell.close()
        server.stop()


def run_block(walk, name: str) -> str:
    block = walk["blocks"][name]
    address = f"127.0.0.1:{walk['server'].port}"
    cwd = ROOT if name in RUN_IN_CHECKOUT else walk["shell"].scratch
    output, failed = walk["shell"].run(substituted(block, walk["key"], address), cwd, BLOCK_TIMEOUTS_S[name])
    assert not failed, f"commands of the documentation's {name!r} block failed: {failed}\nit printed:\n{output}"
    return output


# --- what each block must print ---------------------------------------------------------


def check_quickstart(walk, output):
    vectors = dicts_with(json_values(output), "vector")
    assert len(vectors) == 1, output
    assert [len(vector) for vector in vectors[0]["vector"]] == [384, 384]


def check_keys(walk, output):
    created = re.search(r"id (\d+) for account 'alice'.*?\n(ik_[A-Za-z0-9_-]+)", output, re.S)
    assert created and created.group(1) == "2", output  # the keys page revokes id 2, alice's on a fresh install
    listed = [line.split("\t") for line in output.splitlines() if line.count("\t") >= 4]
    assert [row[1] for row in listed] == ["default", "alice", "alice"], output  # keys list, then --account alice
    assert "revoked key 2" in output
    alice_key = created.group(2)
    url = walk["server"].url + "/text-vectorisation"
    deadline = time.monotonic() + 10  # "running servers refuse it within 2 s"
    while (status := requests.post(url, json={"text": "x"}, headers={"x-api-key": alice_key}).status_code) != 401:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)


def check_openai(walk, output):
    lines = [line for line in output.splitlines() if line.strip()]
    usage = [line for line in lines if line.startswith("Usage(")]
    assert usage == ["Usage(prompt_tokens=12, total_tokens=12)"], output
    after = lines[lines.index(usage[0]) + 1:]
    assert after and after[0] == "The capital of France is Paris.", output
    assert len(after) >= 2, output  # the streamed answer


def check_upload(walk, output):
    base = walk["server"].url
    assert re.search(re.escape(base) + r"/uploads/\d+\?expires=\d+&signature=[0-9a-f]+", output), output
    values = json_values(output)
    assert dicts_with(values, "message")[0]["message"].startswith("Upload received"), output
    details = dicts_with(values, "build_status")
    assert details and details[-1]["name"] == "my-model" and details[-1]["build_status"] == "success", output
    assert dicts_with(values, "output")[-1] == {"output": {"echo": {"anything": 1}, "greeting": "hello"}}, output


def check_train_text(walk, output):
    values = json_values(output)
    dataset = [value for value in dicts_with(values, "stats") if value.get("object") == "dataset"]
    assert dataset and dataset[-1]["status"] == "ready" and dataset[-1]["format"] == "text-label", output
    assert dataset[-1]["stats"]["rows"] == 12 and dataset[-1]["stats"]["labels"] == {"negative": 6, "positive": 6}
    assert dataset[-1]["message"] == "Ready: 12 rows, 2 labels"
    job = [value for value in values if isinstance(value, dict) and value.get("object") == "training.job"]
    assert job and job[-1]["status"] == "succeeded" and job[-1]["version"] == 1, output
    assert [epoch["epoch"] for epoch in job[-1]["epochs"]] == [1, 2]
    assert job[-1]["message"] == "Trained version 1 of sentiment; it serves now."
    assert dicts_with(values, "log"), output
    probabilities = dicts_with(values, "probabilities")[-1]["probabilities"]
    assert set(probabilities) == {"negative", "positive"} and probabilities["positive"] > probabilities["negative"]


def check_train_tabular(walk, output):
    answer = dicts_with(json_values(output), "prediction")
    assert answer and answer[-1]["prediction"] == "Iris-setosa", output
    probabilities = answer[-1]["probabilities"]
    assert set(probabilities) == {"Iris-setosa", "Iris-versicolor", "Iris-virginica"}
    assert max(probabilities, key=probabilities.get) == "Iris-setosa"


def check_improve_loop(walk, output):
    """Revision 2 made by the edit; version 2, kept on from version 1 with 400 more
    rows, better on the held-out set (seeded: the same figures each run); the batch
    answered every line, in order."""
    assert re.search(r"^2$", output, re.M), output
    compared = re.search(r"'values': \[([0-9.]+), ([0-9.]+)\]", output)
    assert compared and float(compared[2]) > float(compared[1]), output
    assert "{'total': 300, 'completed': 300, 'failed': 0}" in output, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"id":"batch_')]
    assert [line["custom_id"] for line in lines] == ["row-1", "row-2"], output
    assert all(line["response"]["status_code"] == 200 for line in lines), output


def check_keep_training(walk, output):
    values = json_values(output)
    job = dicts_with(values, "test_metrics")
    assert job and job[0]["status"] == "succeeded" and job[0]["version"] == 2, output
    assert job[0]["parent"] == {"model": "iris", "version": 1}, output
    assert job[0]["epochs"][0]["train_accuracy"] is not None and job[0]["test_metrics"]["accuracy"] is not None
    assert "kept on from iris@1: warm start" in output, output
    version = dicts_with(values, "parent")[-1]
    assert version["version"] == 2 and version["parent"] == {"model": "iris", "version": 1}, output
    assert version["metrics"]["test_accuracy"] == job[0]["test_metrics"]["accuracy"], output


def check_prediction_url(walk, output):
    values = json_values(output)
    created = dicts_with(values, "url")
    assert created and created[0]["url"].startswith(walk["server"].url + "/p/pk_"), output
    answers = dicts_with(values, "prediction")
    assert answers and answers[-1]["prediction"] == "Iris-setosa", output


def check_async(walk, output):
    assert re.search(r"^HTTP/1\.1 202 ACCEPTED", output, re.M), output
    assert re.search(r"^Location: /predictions/pred_[0-9a-f]+", output, re.M), output
    predictions = dicts_with(json_values(output), "status")
    assert predictions[0]["status"] == "queued" and predictions[0]["model"] == "smollm2-135m-instruct", output
    finished = predictions[-1]
    assert finished["id"] == predictions[0]["id"] and finished["status"] == "succeeded", output
    assert finished["output"]["output"].startswith("Once upon a time"), output


def check_usage(walk, output):
    usage = dicts_with(json_values(output), "totals")
    assert usage and usage[0]["hours"] == 1, output
    totals = {(row["task"], row["model"]): row for row in usage[0]["totals"]}
    assert totals[("text-vectorisation", "english")]["requests"] >= 1, output


CHECKS = {
    "quickstart": check_quickstart,
    "keys": check_keys,
    "openai": check_openai,
    "upload": check_upload,
    "improve-loop": check_improve_loop,
    "train-text": check_train_text,
    "train-tabular": check_train_tabular,
    "keep-training": check_keep_training,
    "prediction-url": check_prediction_url,
    "async": check_async,
    "usage": check_usage,
}


def test_the_documentation_marks_the_blocks_this_test_runs_in_this_order():
    assert list(documentation_blocks()) == list(BLOCK_TIMEOUTS_S) == list(CHECKS)


@pytest.mark.parametrize("name", list(BLOCK_TIMEOUTS_S))
def test_a_readme_block_runs_as_written(walk, name):
    earlier = list(BLOCK_TIMEOUTS_S)[:list(BLOCK_TIMEOUTS_S).index(name)]
    missing = [block for block in earlier if walk["results"].get(block) != "passed"]
    # Later blocks use what earlier ones made (the iris model, KEY): say so rather than
    # fail for a reason that is not theirs.
    assert not missing, f"an earlier documentation block did not pass: {missing}"
    output = run_block(walk, name)
    CHECKS[name](walk, output)
    walk["results"][name] = "passed"


# --- (b) the URLs the documentation gives --------------------------------------------------------

URL = re.compile(r"http://127\.0\.0\.1:8000(/[^\s`)\"'<>]*)?")


def prose_urls(text: str) -> list[str]:
    """The paths of the http://127.0.0.1:8000 URLs outside code blocks (those inside the
    blocks run above; the others in code are outputs or placeholders)."""
    paths, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or line.startswith("    "):
            continue
        paths += [(found.group(1) or "").rstrip(".,;:") for found in URL.finditer(line)]
    return sorted(set(paths))


def answers_as_a_sign_in_page(response):
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html"), response.text
    assert "/ui/sign-in" in response.url and 'name="key"' in response.text


def answers_with_swagger_ui(response):
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "swagger" in response.text.lower()


def answers_with_the_openapi_document(response):
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")
    assert "/text-vectorisation" in response.json()["paths"]


def answers_as_the_service(response):
    # The documentation gives the bare address as where the service listens: it answers (without a key) where to go.
    assert response.status_code == 200 and response.json()["links"]["dashboard"] == "/ui/"


URL_EXPECTATIONS = {
    "": answers_as_the_service,
    "/ui": answers_as_a_sign_in_page,
    "/docs": answers_with_swagger_ui,
    "/openapi.json": answers_with_the_openapi_document,
}


def documentation_urls() -> dict[str, list[str]]:
    """{path of a prose URL: the documentation files that give it}."""
    files: dict[str, list[str]] = {}
    for file in documentation_files():
        for path in prose_urls(read(file)):
            files.setdefault(path, []).append(os.path.relpath(file, ROOT))
    return files


def test_the_url_walk_covers_the_readme_and_the_docs_pages():
    given_by = {file for files in documentation_urls().values() for file in files}
    assert "README.md" in given_by and any(file.startswith("docs" + os.sep) for file in given_by), given_by


def test_every_url_in_the_documentations_prose_answers_as_it_says(walk):
    urls = documentation_urls()
    unknown = {path: urls[path] for path in urls if path not in URL_EXPECTATIONS}
    assert not unknown, f"URLs this test does not know what to expect of (and where): {unknown}; add them"
    for path in sorted(urls):
        response = requests.get(walk["server"].url + path, timeout=60)
        URL_EXPECTATIONS[path](response)
