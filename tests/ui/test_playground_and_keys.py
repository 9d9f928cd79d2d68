"""The playground (run a task as the account, its curl command) and the keys page (list, create once, revoke)."""

import base64
import html
import json
import re
import shlex
import subprocess

import pytest

from ..conftest import new_key
from ..uploads.helpers import deploy, inference_zip
from .conftest import UiClient

NEW_KEY = re.compile(r'<code id="new-key"[^>]*>([^<]+)</code>')


def run(ui: UiClient, payload, csrf: bool = True, path: str = "/ui/playground/run"):
    """POST the playground script's JSON, with the CSRF header as window.infer.send adds it."""
    headers = {"Accept": "application/json", **({"X-CSRF-Token": ui.csrf} if csrf else {})}
    return ui.client.post(path, json=payload, headers=headers)


def shell_words(command: str) -> list[str]:
    """The words a POSIX shell makes of a one-command line (line continuations joined first, as the shell does)."""
    return shlex.split(command.replace("\\\n", ""))


def run_in_bash(command: str, folder) -> tuple[list[str], str]:
    """Run a pasted curl command in bash with a stand-in curl: (its arguments, what it read on stdin)."""
    stand_in = 'curl() { printf "%s\\n" "$@" > args.txt; cat > stdin.txt; }\n'
    subprocess.run(["bash", "-c", stand_in + command], cwd=folder, check=True, stdin=subprocess.DEVNULL,
                   env={"PATH": "/usr/bin:/bin", "INFER_API_KEY": "ik_from_the_environment"})
    return (folder / "args.txt").read_text().splitlines(), (folder / "stdin.txt").read_text()


def key_ids(client, key: str) -> dict[str, int]:
    """{prefix: id} of the keys of `key`'s account, through the API."""
    return {row["prefix"]: row["id"] for row in client.get("/keys", headers={"x-api-key": key}).json}


# --- playground ----------------------------------------------------------------

def test_the_playground_lists_the_tasks_their_models_and_fields(ui_for):
    ui = ui_for("alice")

    page = ui.get("/ui/playground").get_data(as_text=True)
    for task in ("text-vectorisation", "qa", "text-classification", "image-classification", "text-generation",
                 "summarisation", "emotion", "image-vectorisation", "image-text-vectorisation", "custom", "tabular",
                 "text-similarity"):
        assert f'<option value="{task}"' in page
    assert '<select id="task" name="task"' in page and '<label for="task">Task</label>' in page
    assert '<label for="model">Model</label>' in page
    # The first task's models, its default first, and its one field.
    assert re.search(r'<option value="english" selected>english: all-MiniLM-L6-v2 \(default\)', page)
    assert '<option value="multilingual">' in page and '<option value="clip">' in page
    assert 'id="field-text" data-name="text" data-kind="text" required' in page
    assert '<pre id="answer"' in page and ">Run</button>" in page
    # The empty form's command is there before the script takes over.
    shown = html.unescape(re.search(r'<pre id="curl"[^>]*>(.*?)</pre>', page, re.S)[1])
    assert shell_words(shown)[-2:] == ["--data", '{"text": "", "model": "english"}']

    qa = ui.get("/ui/playground?task=qa").get_data(as_text=True)
    assert all(f'id="field-{name}"' in qa for name in ("question", "context", "prev_q", "prev_a"))
    assert 'data-kind="lines"' in qa and "Previous questions (one per line)" in qa

    image = ui.get("/ui/playground?task=image-classification").get_data(as_text=True)
    assert '<input type="file" accept="image/*" id="field-image" data-name="image" data-kind="image" required' in image
    assert 'id="field-labels" data-name="labels" data-kind="lines"' in image

    generation = ui.get("/ui/playground?task=text-generation").get_data(as_text=True)
    assert re.search(r'<details>.*id="field-max_length" data-name="max_length" data-kind="integer"', generation, re.S)
    assert 'placeholder="20"' in generation and 'data-kind="boolean"' in generation

    tabular = ui.get("/ui/playground?task=tabular").get_data(as_text=True)
    assert "No model serves this task yet" in tabular and 'data-kind="json"' in tabular

    # A task added as one spec module has its form too: its fields from its request schema.
    similarity = ui.get("/ui/playground?task=text-similarity").get_data(as_text=True)
    assert all(f'id="field-{name}" data-name="{name}" data-kind="text" required' in similarity
               for name in ("text_a", "text_b"))


def test_own_models_are_offered_and_run_only_for_their_account(make_app):
    app = make_app(BUILDER=True, BUILD_POLL_S=0.2)
    client = app.test_client()
    alice_key = new_key(app, "alice")
    assert deploy(client, {"x-api-key": alice_key}, "doubler", inference_zip("2"))["build_status"] == "success"
    alice, bob = UiClient(app, alice_key), UiClient(app, new_key(app, "bob"))

    assert '<option value="doubler">doubler</option>' in alice.get("/ui/playground").get_data(as_text=True)
    custom = alice.get("/ui/playground?task=custom&model=doubler").get_data(as_text=True)
    assert '<option value="doubler" selected>' in custom and 'id="field-input" data-name="input"' in custom

    # The custom task's free fields go into the body as they are.
    answer = run(alice, {"task": "custom", "body": {"numbers": [1, 2, 3], "model": "doubler"}}).json
    assert answer["status"] == 200 and answer["answer"] == {"output": {"sum": 6}}

    assert "doubler" not in bob.get("/ui/playground?task=custom").get_data(as_text=True)
    refused = run(bob, {"task": "custom", "body": {"numbers": [1], "model": "doubler"}}).json
    assert refused["status"] == 404 and not refused["ok"] and "doubler" in refused["message"]


@pytest.mark.packaged_model
def test_running_text_vectorisation_answers_the_apis_vector(ui_for, ui_app):
    ui = ui_for("alice")
    body = {"text": "iPhone 12 128GB", "model": "english"}

    response = run(ui, {"task": "text-vectorisation", "body": body, "files": {}})

    assert response.status_code == 200
    result = response.json
    direct = ui_app.test_client().post("/text-vectorisation", json=body,
                                       headers={"x-api-key": new_key(ui_app, "carol")})
    assert result["status"] == 200 and result["ok"] and result["message"] is None
    assert len(result["answer"]["vector"]) == 384
    assert result["answer"] == direct.json
    assert "/text-vectorisation" in result["curl"]


def test_an_invalid_body_answers_the_apis_4xx_message(ui_for, ui_app):
    ui = ui_for("alice")
    body = {"text": "hello", "model": "english", "colour": "blue"}

    result = run(ui, {"task": "text-vectorisation", "body": body}).json

    direct = ui_app.test_client().post("/text-vectorisation", json=body, headers={"x-api-key": new_key(ui_app, "bob")})
    assert result["status"] == direct.status_code == 422 and not result["ok"]
    assert result["answer"] == direct.json
    assert "colour" in result["message"] and "Unknown field" in result["message"]

    unknown_model = run(ui, {"task": "text-vectorisation", "body": {"text": "hi", "model": "nobody-has-this"}}).json
    assert unknown_model["status"] == 404 and "nobody-has-this" in unknown_model["message"]


def test_the_run_route_needs_the_csrf_token_and_a_known_task(ui_for):
    ui = ui_for("alice")

    refused = run(ui, {"task": "text-vectorisation", "body": {"text": "hi"}}, csrf=False)
    assert refused.status_code == 403

    for payload in ({"task": "no-such-task", "body": {}}, {"task": ["qa"], "body": {}}, {"task": "qa", "body": "text"},
                    ["not", "an", "object"],
                    {"task": "image-vectorisation", "body": {}, "files": {"image": "cat.png"}}):
        answer = run(ui, payload)
        assert answer.status_code == 400 and answer.json["message"]

    signed_out = UiClient(ui.app)
    assert run(signed_out, {"task": "qa", "body": {}}).status_code == 401


def test_the_curl_command_sends_the_same_request_to_the_public_url(make_app, ui_for, tmp_path):
    app = make_app(PUBLIC_URL="https://infer.example.com/")
    ui = ui_for("alice", app=app)
    body = {"text": "It's $HOME, `date` and \"quotes\"\nüñíçødé \\ too", "model": "english"}

    response = run(ui, {"task": "text-vectorisation", "body": body}, path="/ui/playground/curl")

    assert response.status_code == 200
    command = response.json["curl"]
    assert "ik_" not in command  # never a real key: the page does not have one
    words = shell_words(command)
    assert words[:5] == ["curl", "--request", "POST", "--url", "https://infer.example.com/text-vectorisation"]
    assert words[words.index("--data") + 1] == json.dumps(body, ensure_ascii=False)
    headers = [words[i + 1] for i, word in enumerate(words) if word == "--header"]
    assert headers == ["Content-Type: application/json", "x-api-key: $INFER_API_KEY"]

    # Pasted into a shell: the key comes from the environment, the body arrives unchanged.
    arguments, _ = run_in_bash(command, tmp_path)
    assert "x-api-key: ik_from_the_environment" in arguments
    assert json.loads(arguments[arguments.index("--data") + 1]) == body


def test_the_curl_command_of_an_image_task_reads_the_file(ui_for, tmp_path):
    ui = ui_for("alice")
    image = bytes(range(256)) * 2000  # 512 KB: more than one command-line argument may hold once base64'd
    (tmp_path / "my cat's photo.png").write_bytes(image)
    body = {"image": "", "labels": ["a cat", "a dog's"], "model": "clip"}

    command = run(ui, {"task": "image-classification", "body": body, "files": {"image": "my cat's photo.png"}},
                  path="/ui/playground/curl").json["curl"]

    assert "--url http://localhost/image-classification" in command
    arguments, sent = run_in_bash(command, tmp_path)
    assert arguments[-2:] == ["--data-binary", "@-"]
    assert json.loads(sent) == {**body, "image": base64.b64encode(image).decode()}


# --- keys --------------------------------------------------------------------------

def test_a_new_key_is_shown_once_and_works(ui_for, ui_app):
    ui = ui_for("alice")

    response = ui.post("/ui/keys", {"label": "laptop"})

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    key = NEW_KEY.search(page)[1]
    assert key.startswith("ik_") and "laptop" in page
    assert '<table id="keys-table">' in page

    again = ui.get("/ui/keys").get_data(as_text=True)
    assert key not in again and 'id="new-key"' not in again and "laptop" in again
    # Nor kept in the session cookie (signed, not encrypted: its contents are readable).
    cookie = ui.client.get_cookie("infer_ui", path="/ui")
    stored = ui_app.session_interface.get_signing_serializer(ui_app).loads(cookie.value)
    assert key not in json.dumps(stored)

    listed = ui_app.test_client().get("/keys", headers={"x-api-key": key})
    assert listed.status_code == 200 and "laptop" in [row["label"] for row in listed.json]


def test_revoke_a_key_but_not_another_accounts(ui_for, ui_app):
    ui = ui_for("alice")
    api = ui_app.test_client()
    spare, bobs = new_key(ui_app, "alice"), new_key(ui_app, "bob")
    spare_id, bobs_id = key_ids(api, spare)[spare[:10]], key_ids(api, bobs)[bobs[:10]]
    page = ui.get("/ui/keys").get_data(as_text=True)
    assert spare[:10] in page and bobs[:10] not in page
    assert f'action="/ui/keys/{spare_id}/revoke"' in page and "data-confirm=" in page

    revoked = ui.post(f"/ui/keys/{spare_id}/revoke")

    assert revoked.status_code == 302 and revoked.headers["Location"].endswith("/ui/keys")
    assert api.get("/keys", headers={"x-api-key": spare}).status_code == 401
    after = ui.get("/ui/keys").get_data(as_text=True)
    assert "revoked" in after and f'action="/ui/keys/{spare_id}/revoke"' not in after

    refused = ui.post(f"/ui/keys/{bobs_id}/revoke")
    assert refused.status_code == 404
    assert f"key {bobs_id} not found" in refused.get_data(as_text=True)
    assert api.get("/keys", headers={"x-api-key": bobs}).status_code == 200


def test_revoking_the_sessions_own_key_ends_the_session(ui_app):
    key = new_key(ui_app, "alice")
    ui = UiClient(ui_app, key)
    own_id = key_ids(ui_app.test_client(), key)[key[:10]]
    assert "(this session)" in ui.get("/ui/keys").get_data(as_text=True)

    revoked = ui.post(f"/ui/keys/{own_id}/revoke")

    assert revoked.status_code == 302 and "/ui/sign-in" in revoked.headers["Location"]
    assert "You revoked the key this session was signed in with" in ui.get("/ui/sign-in").get_data(as_text=True)
    assert "/ui/sign-in" in ui.get("/ui/keys").headers["Location"]
    assert run(ui, {"task": "qa", "body": {}}).status_code == 401
    # Signing in again with it is refused.
    assert ui.sign_in(key).status_code == 401


def test_key_forms_without_the_csrf_token_change_nothing(ui_for, ui_app):
    ui = ui_for("alice")
    spare = new_key(ui_app, "alice")
    api = ui_app.test_client()
    before = key_ids(api, spare)

    assert ui.post(f"/ui/keys/{before[spare[:10]]}/revoke", csrf=False).status_code == 403
    assert ui.post("/ui/keys", {"label": "forged"}, csrf=False).status_code == 403
    assert ui.post("/ui/keys", {"label": "forged", "csrf_token": "not-the-token"}, csrf=False).status_code == 403

    assert key_ids(api, spare) == before
    assert api.get("/keys", headers={"x-api-key": spare}).status_code == 200
