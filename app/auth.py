"""Moved: keys to core/keys.py, the request check to web/auth.py. Re-exported
here until every import names them."""

from core.keys import *  # noqa: F401,F403
from core.keys import KEY_PREFIX, KeyCache, create_key, ensure_bootstrap_key, find_active_key, hash_key, revoke_key  # noqa: F401
from web.auth import *  # noqa: F401,F403
from web.auth import (BACKGROUND_CALL, HEADER, HOW_TO_SEND, INTERNAL_ACCOUNT, current_account_id,  # noqa: F401
                      is_background_call, key_refused, presented_key, require_api_key)
