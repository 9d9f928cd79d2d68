"""Moved: tables to core/tables.py, the engine to core/database.py, the request's
session to web/database.py. Re-exported here until every import names them."""

from core.database import *  # noqa: F401,F403
from core.database import Database, add_missing_columns, migrate_version_numbers, one_process_at_a_time  # noqa: F401
from core.tables import *  # noqa: F401,F403
from core.tables import VERSION_NUMBER_INDEX, Base, owned, utcnow  # noqa: F401
from web.database import get_db, session  # noqa: F401
