"""Builds are jobs in the database: a restart mid-build resumes it; nothing is lost."""

from datetime import timedelta

from sqlalchemy import select, update

from core.tables import ModelVersion, utcnow

from .helpers import pickle_zip, put_local, upload_url, wait_built


def interrupted_build(client_for, data_dir, database_url, archive: bytes):
    """Upload with a process that has no builder, then leave the job as a dead process would."""
    api = client_for(DATA_DIR=data_dir, DATABASE_URL=database_url)
    first = api.app
    client, headers = api.client, api.headers
    assert put_local(client, upload_url(client, headers, "survivor"), archive).status_code == 200
    with first.extensions["db"].sessions() as session:
        session.execute(update(ModelVersion).values(status="building", lease_until=utcnow() - timedelta(seconds=1)))
        session.commit()
    first.extensions["db"].engine.dispose()
    return headers


def test_a_restart_resumes_an_interrupted_build(make_app, client_for, tmp_path, database_url):
    data_dir = str(tmp_path / "data")
    headers = interrupted_build(client_for, data_dir, database_url, pickle_zip("resumed"))

    restarted = make_app(DATA_DIR=data_dir, DATABASE_URL=database_url, BUILDER=True, BUILD_POLL_S=0.2)
    client = restarted.test_client()

    assert wait_built(client, headers, "survivor")["build_status"] == "success"
    assert client.post("/custom", json={"model": "survivor"}, headers=headers).json["output"]["greeting"] == "resumed"


def test_a_build_held_by_a_live_process_is_not_taken_over(client_for, tmp_path):
    api = client_for()
    app, client, headers = api.app, api.client, api.headers
    put_local(client, upload_url(client, headers, "held"), pickle_zip())
    builder = app.extensions["builder"]
    first_claim = builder.claim()

    assert first_claim is not None
    assert builder.claim() is None  # the lease is live: nobody else gets it
    with app.extensions["db"].sessions() as session:
        assert session.scalar(select(ModelVersion.status)) == "building"


def test_a_resumed_build_whose_upload_vanished_fails_cleanly(make_app, client_for, tmp_path, database_url):
    import glob
    import os

    data_dir = str(tmp_path / "data")
    headers = interrupted_build(client_for, data_dir, database_url, pickle_zip())
    for path in glob.glob(os.path.join(data_dir, "uploads", "*.zip")):
        os.remove(path)

    restarted = make_app(DATA_DIR=data_dir, DATABASE_URL=database_url, BUILDER=True, BUILD_POLL_S=0.2)
    details = wait_built(restarted.test_client(), headers, "survivor")

    assert details["build_status"] == "fail"
    assert "upload is missing" in details["build_message"]
