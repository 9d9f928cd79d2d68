"""Run a task endpoint for an account, from inside the service (web/internal_calls.py)."""

from flask import Flask

from web.internal_calls import request_as


def call_as(app: Flask, account_id: int, path: str, body: dict, request_id: str | None = None,
            background: bool = False) -> tuple[int, dict]:
    """POST `body` to `path` as `account_id`: (status, JSON answer); `background`
    for work no client waits on now (web/internal_calls.py)."""
    headers = {"X-Request-Id": request_id} if request_id else {}
    answer = request_as(app, account_id, "POST", path, json=body, headers=headers, background=background)
    return answer.status, answer.body


def run_in_background(app: Flask, account_id: int, path: str, body: dict, request_id: str | None) -> tuple[int, dict]:
    """An asynchronous prediction's stored request, run as its account (predictions/runner.py)."""
    return call_as(app, account_id, path, body, request_id, background=True)
