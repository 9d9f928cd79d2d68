"""Calling the service's own HTTP API for an account, from inside the service.

The call goes through the whole app (schemas, limits, the model's batcher,
metrics, errors), as the same request sent with the account's key would: the
request carries the account in its WSGI environ (web/auth.py INTERNAL_ACCOUNT),
which no HTTP client can set. It runs on a thread of its own, so that its
request and app contexts never mix with the caller's.

Asynchronous predictions replay their stored request this way, and the web UI
(ui/) reads and changes everything through it, so an account sees in the UI
exactly what its key sees through the API.
"""

import threading
from dataclasses import dataclass

from flask import Flask, has_request_context, request

from web.auth import BACKGROUND_CALL, INTERNAL_ACCOUNT


@dataclass(frozen=True)
class Answer:
    status: int
    body: object  # the JSON answer, or None when the answer is not JSON
    headers: dict

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The API's error message (its JSON error shape), for showing to a person."""
        if isinstance(self.body, dict):
            # The service's messages already name the fields at fault; OpenAI's shape
            # (/v1) nests its message under "error".
            error = self.body.get("error")
            text = self.body.get("message") or (error.get("message") if isinstance(error, dict) else "") or ""
            problems = self.body.get("errors")
            if problems and not text:
                text = "; ".join(f"{field}: {', '.join(map(str, issues)) if isinstance(issues, list) else issues}"
                                 for field, issues in _flatten(problems))
            return text.strip() or f"HTTP {self.status}"
        return f"HTTP {self.status}"


def _flatten(problems, prefix=""):
    """webargs' nested {location: {field: [messages]}} as (dotted field, messages) pairs."""
    for field, issues in problems.items():
        name = f"{prefix}.{field}" if prefix else str(field)
        if isinstance(issues, dict):
            yield from _flatten(issues, "" if name in ("json", "query", "form", "files") else name)
        else:
            yield name, issues


def request_as(app: Flask, account_id: int, method: str, path: str, *, json=None, query: dict | None = None,
               headers: dict | None = None, data=None, content_type: str | None = None,
               background: bool = False) -> Answer:
    """Send one request to the app as `account_id` and return its answer.

    Made while serving a request (the UI, a prediction URL), it comes in on that
    request's base URL, so URLs the API builds from its own host (upload URLs
    without INFER_PUBLIC_URL) name the host the client reached. `background`: made
    by background work, not for a client waiting now (web/auth.py BACKGROUND_CALL)."""
    answers: list = []
    base_url = request.host_url if has_request_context() else "http://localhost/"

    def run():
        response = app.test_client().open(path, method=method, json=json, query_string=query, data=data,
                                          content_type=content_type, headers=headers or {}, base_url=base_url,
                                          environ_base={INTERNAL_ACCOUNT: account_id,
                                                        BACKGROUND_CALL: background})
        try:
            answers.append(Answer(response.status_code, response.get_json(silent=True), dict(response.headers)))
        finally:
            response.close()  # as a server would: what waits for the answer's end runs now

    thread = threading.Thread(target=run, name="internal-call")
    thread.start()
    thread.join()
    return answers[0]
