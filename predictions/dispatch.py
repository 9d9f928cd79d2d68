"""Run a task endpoint for an account, from inside the service.

The call goes through the whole app (schemas, limits, the model's batcher,
metrics, errors), as the same request sent with the account's key would: the
request carries the account in its WSGI environ (app/auth.py INTERNAL_ACCOUNT),
which no HTTP client can set. It runs on a thread of its own, so that its
request and app contexts never mix with the caller's.
"""

import threading

from flask import Flask

from app.auth import INTERNAL_ACCOUNT


def call_as(app: Flask, account_id: int, path: str, body: dict, request_id: str | None = None) -> tuple[int, dict]:
    """POST `body` to `path` as `account_id`: (status, JSON answer)."""
    answer: list = []

    def run():
        headers = {"X-Request-Id": request_id} if request_id else {}
        response = app.test_client().post(path, json=body, headers=headers,
                                          environ_base={INTERNAL_ACCOUNT: account_id})
        answer.append((response.status_code, response.get_json(silent=True)))

    thread = threading.Thread(target=run, name="prediction")
    thread.start()
    thread.join()
    return answer[0]
