"""What the job runner records of a child's epoch reports: an epoch reported again
replaces the earlier report, but a resumed run's restored account of an earlier
epoch only fills a gap (the report that died with a killed process)."""

import json

from core.database import Database
from core.tables import Account, TrainingJob, UserModel
from training.records import JobRecord


def _event(stats: dict) -> str:
    return json.dumps({"event": "epoch", "stats": stats}) + "\n"


def test_restored_epochs_fill_gaps_and_never_replace_a_recorded_epoch(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/jobs.db")
    with database.sessions() as session:
        session.add(Account(id=1, name="alice"))
        session.add(UserModel(id=1, account_id=1, name="m"))
        session.flush()
        session.add(TrainingJob(id="job_1", seq=1, account_id=1, model_id=1, model_name="m", task="tabular",
                                dataset_id="ds_1", epochs=[{"epoch": 1, "train_loss": 0.5, "elapsed_s": 3.0}]))
        session.commit()
    record = JobRecord(database.sessions, "job_1", 10_000)
    events = tmp_path / "events"
    events.write_text(_event({"epoch": 1, "train_loss": 0.9, "elapsed_s": None, "restored": True})
                      + _event({"epoch": 2, "train_loss": 0.4, "elapsed_s": None, "restored": True})
                      + _event({"epoch": 3, "train_loss": 0.3, "elapsed_s": 9.0}))
    record.read_events(open(events))
    assert record.save_progress() == "ok"
    with database.sessions() as session:
        epochs = session.get(TrainingJob, "job_1").epochs
    assert epochs == [{"epoch": 1, "train_loss": 0.5, "elapsed_s": 3.0},   # kept: it was recorded
                      {"epoch": 2, "train_loss": 0.4, "elapsed_s": None},  # filled in: its report was lost
                      {"epoch": 3, "train_loss": 0.3, "elapsed_s": 9.0}]
    database.engine.dispose()
