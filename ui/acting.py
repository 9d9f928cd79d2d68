"""The UI's pages act through the domain services (services/) as the signed-in
account: they see and change exactly what that account's key could through the
API, because both go through the same checks."""

from flask import g
from marshmallow import ValidationError

from core.errors import ApiError, NotFound
from services.account import Actor, ServiceContext
from web.database import session
from web.errors import validation_error
from web.service_context import context_for


def as_account() -> ServiceContext:
    return context_for(Actor(g.ui_account_id, g.ui_account))


def read_form(schema, sent: dict) -> dict:
    """`sent` read by the API's own schema: a bad field is the API's 422, with its message."""
    try:
        return schema.load(sent)
    except ValidationError as exc:
        raise validation_error(exc.messages) from None


def attempt(action, *args, **kwargs):
    """(result, None) of `action`, or (None, the ApiError it raised) for the page
    to show, with the database session rolled back to what is stored. A NotFound
    (another account's or a deleted thing) is not caught: it is the page's 404."""
    try:
        return action(*args, **kwargs), None
    except NotFound:
        raise
    except ApiError as error:
        session().rollback()
        return None, error
