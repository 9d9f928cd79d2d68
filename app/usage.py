"""Moved: the recorder to core/usage.py, the request hook to web/usage.py.
Re-exported here until every import names them."""

from core.usage import *  # noqa: F401,F403
from core.usage import UsageRecorder, account_usage, add_counts, update_or_insert  # noqa: F401
from web.usage import _count, inference_routes, init_app  # noqa: F401
