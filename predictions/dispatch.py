"""Run a task endpoint for an account, from inside the service (app/internal_calls.py)."""

from flask import Flask

from app.internal_calls import request_as


def call_as(app: Flask, account_id: int, path: str, body: dict, request_id: str | None = None,
            background: bool = False) -> tuple[int, dict]:
    """POST `body` to `path` as `account_id`: (status, JSON answer); `background`
    for work no client waits on now (app/internal_calls.py)."""
    headers = {"X-Request-Id": request_id} if request_id else {}
    answer = request_as(app, account_id, "POST", path, json=body, headers=headers, background=background)
    return answer.status, answer.body
