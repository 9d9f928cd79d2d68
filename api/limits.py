"""GET /limits: your account's limits and what is left of them this minute; and
the operator API, GET/PUT /admin/accounts/{name}/limits, for the accounts named
in INFER_ADMIN_ACCOUNTS. To every other key /admin does not exist: 404, the
same answer as for a path that is not there, whatever the method or body."""

from dataclasses import asdict

from flask import current_app
from flask.views import MethodView
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from werkzeug.exceptions import NotFound as NoSuchRoute

from core.errors import NotFound
from core.tables import Account
from web.account_limits import LIMIT_NAMES, MOST, account_limits, effective, find_account, overrides_of, set_overrides
from web.auth import current_account_id
from web.blueprint import Blueprint
from web.database import session
from web.rate_limits import RateLimits
from web.settings import current_settings

blp = Blueprint("limits", __name__, url_prefix="/limits", description="Your account's limits.")
admin_blp = Blueprint("admin", __name__, url_prefix="/admin",
                      description="Operator API, for the keys of the accounts in INFER_ADMIN_ACCOUNTS (404 to others).")

DESCRIPTIONS = {
    "requests_per_min": "POSTs to the inference routes per minute, every worker and replica together (429 above).",
    "tokens_per_min": "Generation tokens per minute (/v1/completions, /v1/chat/completions, /text-generation), "
                      "charged at admission: the prompt's characters / 4 plus max tokens x outputs (429 above).",
    "max_in_flight": "Requests of the account one server process works on at once (429 above).",
}


class EffectiveLimits(Schema):
    requests_per_min = fields.Integer(metadata={"description": DESCRIPTIONS["requests_per_min"] + " 0: no limit."})
    tokens_per_min = fields.Integer(metadata={"description": DESCRIPTIONS["tokens_per_min"] + " 0: no limit."})
    max_in_flight = fields.Integer(metadata={"description": DESCRIPTIONS["max_in_flight"] + " 0: no limit."})


class OwnLimits(Schema):
    class Meta:
        unknown = RAISE

    requests_per_min = fields.Integer(allow_none=True, validate=validate.Range(0, MOST), metadata={
        "description": "The account's own requests per minute (0: no limit); null: INFER_ACCOUNT_REQUESTS_PER_MIN."})
    tokens_per_min = fields.Integer(allow_none=True, validate=validate.Range(0, MOST), metadata={
        "description": "The account's own tokens per minute (0: no limit); null: INFER_ACCOUNT_TOKENS_PER_MIN."})
    max_in_flight = fields.Integer(allow_none=True, validate=validate.Range(0, MOST), metadata={
        "description": "The account's own requests at once per process (0: no limit); null: "
                       "INFER_ACCOUNT_MAX_IN_FLIGHT."})


class YourLimits(EffectiveLimits):
    account = fields.String()
    remaining_requests = fields.Integer(allow_none=True, metadata={
        "description": "Requests left in the sliding minute; null without a limit (or while the counters' "
                       "storage is unreachable: requests then pass)."})
    reset_requests_s = fields.Float(allow_none=True, metadata={
        "description": "Seconds until the whole requests budget is back."})
    remaining_tokens = fields.Integer(allow_none=True, metadata={"description": "Generation tokens left, likewise."})
    reset_tokens_s = fields.Float(allow_none=True, metadata={
        "description": "Seconds until the whole tokens budget is back."})


class AccountLimitsInfo(EffectiveLimits):
    account = fields.String()
    own = fields.Nested(OwnLimits, metadata={
        "description": "The account's own values; null where it takes the operator's default setting."})


class AccountLimitsChange(OwnLimits):
    """Only the limits sent change: a number sets the account's own value (0: no
    limit), null returns it to the default setting."""

    @validates_schema
    def something(self, data, **kwargs):
        if not data:
            raise ValidationError(f"Send at least one of {', '.join(LIMIT_NAMES)} (a number, or null for the "
                                  "default setting).")


@blp.route("")
class Limits(MethodView):
    @blp.response(200, YourLimits)
    def get(self):
        """Your account's limits, and what is left of them this minute"""
        account_id = current_account_id()
        limits = account_limits(account_id)
        answer = {"account": session().get(Account, account_id).name, **asdict(limits)}
        rate_limits: RateLimits = current_app.extensions["rate_limits"]
        for kind, limit in (("requests", limits.requests_per_min), ("tokens", limits.tokens_per_min)):
            window = rate_limits.window(kind, account_id, limit) if limit else None
            answer[f"remaining_{kind}"] = window.remaining if window else None
            answer[f"reset_{kind}_s"] = round(window.reset_s, 3) if window else None
        return answer


# --- the operator API ----------------------------------------------------------------

def operator_accounts() -> set[str]:
    return {name.strip() for name in current_settings().admin_accounts.split(",") if name.strip()}


@admin_blp.before_request
def only_for_operators():
    """Runs after the key check, before a body is read: others learn nothing."""
    operators = operator_accounts()
    account = session().get(Account, current_account_id()) if operators else None
    if account is None or account.name not in operators:
        raise NoSuchRoute()


def described(db_session, account: Account) -> dict:
    own = overrides_of(db_session, account.id)
    limits = effective(current_app.extensions["account_limits"].defaults, own)
    return {"account": account.name, **asdict(limits), "own": own}


def named_account(db_session, name: str) -> Account:
    account = find_account(db_session, name)
    if account is None:
        raise NotFound(f"No account is named {name!r}. Accounts are made with their first key "
                       "(`flask accounts` lists them).")
    return account


@admin_blp.route("/accounts/<string:name>/limits")
class AccountLimitsResource(MethodView):
    @admin_blp.response(200, AccountLimitsInfo)
    def get(self, name):
        """An account's effective limits, and which are its own"""
        db_session = session()
        return described(db_session, named_account(db_session, name))

    @admin_blp.arguments(AccountLimitsChange)
    @admin_blp.response(200, AccountLimitsInfo)
    def put(self, changes, name):
        """Set an account's own limits (null: back to the default setting)

        Only the limits sent change. Servers apply the change within INFER_ACCOUNT_LIMITS_CACHE_TTL_S
        seconds (the one that answers, at once)."""
        db_session = session()
        account = named_account(db_session, name)
        set_overrides(db_session, account.id, changes)
        return described(db_session, account)


def register(api) -> None:
    api.register_blueprint(blp)
    api.register_blueprint(admin_blp)
