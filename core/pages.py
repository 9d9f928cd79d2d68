"""Cursor pagination, newest first, as OpenAI's and DeepAILab's list endpoints page:
{"object": "list", "data": [...], "has_more": bool}, the next page `after` the
last id. Rows carry `seq` (creation order) because their ids are random."""

from sqlalchemy import and_, or_


def newest_first_page(db_session, statement, table, after_row, limit: int, shape) -> dict:
    """One page of `statement`'s rows of `table` (after `after_row`, if given), each as shape(row)."""
    if after_row is not None:
        statement = statement.where(or_(table.seq < after_row.seq,
                                        and_(table.seq == after_row.seq, table.id < after_row.id)))
    rows = db_session.scalars(statement.order_by(table.seq.desc(), table.id.desc()).limit(limit + 1)).all()
    return {"object": "list", "data": [shape(row) for row in rows[:limit]], "has_more": len(rows) > limit}
