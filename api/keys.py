"""/keys: an account manages its own API keys; other accounts' keys are invisible."""

from flask.views import MethodView
from marshmallow import RAISE, Schema, fields

from services import keys
from web.blueprint import Blueprint
from web.service_context import api_context

blp = Blueprint("keys", __name__, url_prefix="/keys", description="Your account's API keys.")


class ApiKeyInfo(Schema):
    id = fields.Integer()
    prefix = fields.String(metadata={"description": "The key's first characters, to tell keys apart."})
    label = fields.String()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class NewKeyBody(Schema):
    class Meta:
        unknown = RAISE

    label = fields.String(load_default="", metadata={"description": "A note to tell the key apart later."})


class NewKey(ApiKeyInfo):
    key = fields.String(metadata={"description": "The key itself; shown only in this response."})


@blp.route("")
class Keys(MethodView):
    @blp.response(200, ApiKeyInfo(many=True))
    def get(self):
        """List your account's keys (never the keys themselves)"""
        return keys.listed(api_context())

    @blp.arguments(NewKeyBody)
    @blp.response(201, NewKey)
    def post(self, body):
        """Create another key for your account; the key is shown only in this reply"""
        row, key = keys.create(api_context(), body["label"])
        fields_shown = ("id", "prefix", "label", "created_at", "revoked_at")
        return {**{name: getattr(row, name) for name in fields_shown}, "key": key}


@blp.route("/<int:key_id>")
class Key(MethodView):
    @blp.response(200, ApiKeyInfo)
    def delete(self, key_id):
        """Revoke one of your keys"""
        return keys.revoke(api_context(), key_id)
