"""The runner shape (core/runner.py) on a table of its own, in a real SQLite
database: the loop runs what is due, no more than its slots at once; a hand-back
makes a row claimable at once; a stopped runner takes nothing new."""

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import DateTime, Integer, String, or_, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.database import Database
from core.fair_claims import FairClaims, WorkKind, leased
from core.runner import Runner
from core.tables import utcnow

WAIT_S = 30  # how long a test waits for a thread to get somewhere before it fails (never a measure)


class Base(DeclarativeBase):
    pass


class Chore(Base):
    __tablename__ = "chores"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _due(now):
    return or_(Chore.status == "queued", (Chore.status == "running") & (Chore.lease_until < now))


CHORES = WorkKind(Chore, due=_due, running=leased("running"), oldest_first=Chore.id)


class Chores(Runner):
    """A kind whose runs wait for the test to let them finish."""

    kind, queue, table = "chore", "chores", Chore

    def __init__(self, sessions, slots: int, cap: int = 10):
        lease = timedelta(seconds=60)
        super().__init__(sessions, FairClaims(CHORES, lease, cap), lease, poll_s=60, slots=slots)
        self.finish = threading.Event()
        self.started = threading.Semaphore(0)

    def claimed_values(self) -> dict:
        return {"status": "running"}

    def run(self, row_id) -> None:
        self.started.release()
        assert self.finish.wait(WAIT_S)
        with self.sessions() as session:
            session.execute(update(Chore).where(Chore.id == row_id).values(status="done", lease_until=None))
            session.commit()


@pytest.fixture
def sessions(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'chores.db'}")
    Base.metadata.create_all(database.engine)
    yield database.sessions
    database.engine.dispose()


def _add(sessions, *accounts) -> None:
    with sessions() as session:
        session.add_all(Chore(account_id=account) for account in accounts)
        session.commit()


def _statuses(sessions) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Chore.status).order_by(Chore.id)))


def test_the_loop_runs_no_more_rows_at_once_than_its_slots_then_the_rest(sessions):
    _add(sessions, 1, 2, 3)
    runner = Chores(sessions, slots=2)
    runner.start()
    try:
        assert runner.started.acquire(timeout=WAIT_S) and runner.started.acquire(timeout=WAIT_S)
        assert sorted(runner.running()) == [1, 2] and _statuses(sessions) == ["running", "running", "queued"]
        runner.finish.set()  # each run that ends wakes the loop, which starts the third
        assert runner.started.acquire(timeout=WAIT_S)
    finally:
        runner.stop()
    runner.join(timeout=WAIT_S)
    assert _statuses(sessions) == ["done", "done", "done"] and runner.running() == []


def test_work_submitted_wakes_the_loop_before_its_poll(sessions):
    runner = Chores(sessions, slots=1)  # polls once a minute
    runner.finish.set()
    runner.start()
    try:
        _add(sessions, 1)
        runner.wake()  # as core/work.py's EmbeddedWork.submit does
        assert runner.started.acquire(timeout=WAIT_S)
    finally:
        runner.stop()
    runner.join(timeout=WAIT_S)
    assert _statuses(sessions) == ["done"]


def test_a_row_handed_back_is_claimable_at_once_and_a_claimed_one_is_not(sessions):
    _add(sessions, 1)
    first, second = Chores(sessions, slots=1), Chores(sessions, slots=1)
    assert first.claim() == 1
    assert second.claim() is None and second.due() == []  # its lease is live
    first.hand_back(1)
    assert second.due() == [1] and second.claim() == 1


def test_run_claimed_runs_a_named_row_once(sessions):
    _add(sessions, 1)
    runner = Chores(sessions, slots=1)
    runner.finish.set()
    assert runner.run_claimed(1)
    assert not runner.run_claimed(1)  # a message delivered twice runs nothing
    assert _statuses(sessions) == ["done"]


def test_a_stopped_runner_takes_no_new_row(sessions):
    runner = Chores(sessions, slots=1)
    runner.start()
    runner.stop()
    runner.join(timeout=WAIT_S)
    assert not [thread for thread in threading.enumerate() if thread.name == "chore"]  # its loop has ended
    _add(sessions, 1)
    runner.wake()
    assert runner.running() == [] and _statuses(sessions) == ["queued"]


def test_a_lease_is_renewed_while_the_block_runs(sessions):
    _add(sessions, 1)
    runner = Chores(sessions, slots=1)
    runner.lease = timedelta(seconds=0.3)  # renewed every 0.1 s

    def lease_until():
        with sessions() as session:
            return session.scalar(select(Chore.lease_until))

    assert runner.claim() == 1
    claimed = lease_until()
    with runner.renewing(1):
        deadline = utcnow() + timedelta(seconds=WAIT_S)
        while lease_until() == claimed and utcnow() < deadline:
            threading.Event().wait(0.05)
        assert lease_until() != claimed
