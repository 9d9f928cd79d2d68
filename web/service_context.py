"""The domain services' context for the request being served: the API's views
act for the account of the request's key, the web UI's pages for the signed-in
account (ui/blueprint.py)."""

from flask import current_app, request

from services.account import Actor, ServiceContext
from web.auth import current_account_id
from web.database import session
from web.settings import current_settings


def base_url() -> str:
    """Where clients reach the service: INFER_PUBLIC_URL, else the host this request came to."""
    return current_settings().public_url or request.host_url


def context_for(actor: Actor) -> ServiceContext:
    return ServiceContext(actor=actor, db=session(), config=current_settings(), parts=current_app.extensions,
                          base_url=base_url())


def api_context() -> ServiceContext:
    """Acting for the account whose key the request carries."""
    return context_for(Actor(current_account_id()))
