"""Editable datasets over HTTP: each edit (add samples, remove by id or uid,
remove a class) makes a new revision with its own statistics; old revisions
stay readable and trainable; images come as base64 or by URL through the
webhook destination guard; edits are checked as uploads are, and two at once
both land."""

import base64
import http.server
import io
import threading

import pytest

from .flow import add_dataset, iris_csv, start_job, wait_job

TEXT_ROWS = "text,label\n" + "".join(f"good thing {n},pos\nbad thing {n},neg\n" for n in range(6))


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1)


def _revision_stats(client, headers, dataset_id, revision):
    shown = client.get(f"/datasets/{dataset_id}?revision={revision}", headers=headers)
    assert shown.status_code == 200, shown.json
    assert shown.json["revision"] == revision
    return shown.json["stats"]


def test_a_dataset_edited_three_times_keeps_each_revision_and_its_statistics(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, TEXT_ROWS, name="reviews")
    assert dataset["status"] == "ready" and dataset["revision"] == 1 and dataset["latest_revision"] == 1
    dataset_id = dataset["id"]
    first_page = client.get(f"/datasets/{dataset_id}/samples?limit=3", headers=headers).json
    assert first_page["total"] == 12 and first_page["revision"] == 1
    assert [row["id"] for row in first_page["data"]] == ["s1", "s2", "s3"]
    assert first_page["data"][0] == {"id": "s1", "text": "good thing 0", "label": "pos"}

    # 1: add rows, one of a new class, with uids of the caller's.
    added = client.post(f"/datasets/{dataset_id}/samples", headers=headers, json={"samples": [
        {"text": "meh thing", "label": "neutral", "uid": "u-1"},
        {"text": "so-so thing", "label": "neutral", "uid": "u-2"},
        {"text": "great thing", "label": "pos"}]})
    assert added.status_code == 201, added.json
    assert added.json["revision"] == 2 and added.json["change"] == {"kind": "add", "added": 3, "removed": 0}
    assert len(added.json["sample_ids"]) == 3 and len(set(added.json["sample_ids"])) == 3
    assert added.json["stats"]["rows"] == 15
    assert added.json["stats"]["labels"] == {"neg": 6, "neutral": 2, "pos": 7}

    # 2: remove by uid (and by id, in the same edit).
    removed = client.post(f"/datasets/{dataset_id}/samples/delete", headers=headers,
                          json={"uids": ["u-1"], "ids": ["s2"]})
    assert removed.status_code == 200, removed.json
    assert removed.json["revision"] == 3 and removed.json["change"] == {"kind": "remove", "added": 0, "removed": 2}
    assert removed.json["stats"]["labels"] == {"neg": 5, "neutral": 1, "pos": 7}

    # 3: remove a class.
    without = client.delete(f"/datasets/{dataset_id}/classes/neutral", headers=headers)
    assert without.status_code == 200, without.json
    assert without.json["revision"] == 4 and without.json["change"]["kind"] == "remove-class"
    assert without.json["stats"]["labels"] == {"neg": 5, "pos": 7} and without.json["stats"]["rows"] == 12

    latest = client.get(f"/datasets/{dataset_id}", headers=headers).json
    assert latest["revision"] == latest["latest_revision"] == 4 and latest["stats"]["rows"] == 12
    revisions = client.get(f"/datasets/{dataset_id}/revisions", headers=headers).json
    assert [(r["revision"], r["change"]["kind"], r["stats"]["rows"]) for r in revisions] == [
        (1, "upload", 12), (2, "add", 15), (3, "remove", 13), (4, "remove-class", 12)]
    # Each revision's statistics and rows stay as they were.
    assert _revision_stats(client, headers, dataset_id, 1)["labels"] == {"neg": 6, "pos": 6}
    assert _revision_stats(client, headers, dataset_id, 2)["labels"] == {"neg": 6, "neutral": 2, "pos": 7}
    assert _revision_stats(client, headers, dataset_id, 3)["input_lengths"]["min"] == len("so-so thing")
    old = client.get(f"/datasets/{dataset_id}/samples?revision=2&limit=100", headers=headers).json
    assert old["total"] == 15 and {"text": "meh thing", "label": "neutral", "uid": "u-1"}.items() <= next(
        row for row in old["data"] if row.get("uid") == "u-1").items()
    now = client.get(f"/datasets/{dataset_id}/samples?limit=100", headers=headers).json
    assert now["revision"] == 4 and "s2" not in {row["id"] for row in now["data"]}
    assert client.get(f"/datasets/{dataset_id}?revision=5", headers=headers).status_code == 404


def _confusion(job: dict) -> tuple:
    metrics = job["metrics"]
    return metrics["accuracy"], metrics["macro_f1"], metrics["confusion_matrix"]


def test_a_job_on_revision_2_trains_on_revision_2_after_revision_3_exists(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv(), name="iris")
    dataset_id = dataset["id"]
    # Revision 2: every third row gone (by id); revision 3 will lose a class too.
    ids = [f"s{n}" for n in range(1, 151, 3)]
    second = client.delete(f"/datasets/{dataset_id}/samples", headers=headers, json={"ids": ids})
    assert second.status_code == 200 and second.json["revision"] == 2 and second.json["stats"]["rows"] == 100

    before = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset_id,
                                                 hyperparameters={"seed": 7})["id"])
    assert before["status"] == "succeeded", before["message"]
    assert before["dataset_revision"] == 2  # the latest, when it started
    assert before["train_rows"] + before["validation_rows"] == 100

    third = client.delete(f"/datasets/{dataset_id}/classes/Iris-setosa", headers=headers)
    assert third.status_code == 200 and third.json["revision"] == 3
    assert set(third.json["stats"]["labels"]) == {"Iris-versicolor", "Iris-virginica"}

    again = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset_id,
                                                dataset_revision=2, hyperparameters={"seed": 7})["id"])
    assert again["status"] == "succeeded", again["message"]
    assert again["dataset_revision"] == 2 and again["train_rows"] == before["train_rows"]
    assert _confusion(again) == _confusion(before)  # the same rows, the same model: the same metrics
    assert len(before["metrics"]["confusion_matrix"]["labels"]) == 3

    # Left out, the revision is the latest; a validation dataset's too.
    validation_id = add_dataset(client, headers, iris_csv(), name="held-out")["id"]
    assert client.delete(f"/datasets/{validation_id}/classes/Iris-setosa", headers=headers).status_code == 200
    latest = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset_id,
                                                 validation_dataset_id=validation_id,
                                                 hyperparameters={"seed": 7})["id"])
    assert latest["status"] == "succeeded", latest["message"]
    assert latest["dataset_revision"] == 3 and latest["validation_dataset_revision"] == 2
    assert latest["train_rows"] == third.json["stats"]["rows"] and latest["validation_rows"] == 100
    assert sorted(latest["metrics"]["confusion_matrix"]["labels"]) == ["Iris-versicolor", "Iris-virginica"]
    too_new = client.post("/models/iris/train", headers=headers,
                          json={"task": "tabular", "dataset_id": dataset_id, "dataset_revision": 4})
    assert too_new.status_code == 422 and "revisions 1 to 3" in too_new.json["message"]


def _png(size=(8, 8), colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _image_zip() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for label, colour in (("red", (220, 0, 0)), ("blue", (0, 0, 220))):
            for number in range(2):
                archive.writestr(f"{label}/{number}.png", _png(colour=colour))
    return out.getvalue()


def _image_dataset(api) -> str:
    created = api.client.post("/datasets", headers=api.headers,
                              data={"file": (io.BytesIO(_image_zip()), "images.zip"), "name": "colours"},
                              content_type="multipart/form-data")
    assert created.status_code == 201, created.json
    from .flow import wait_dataset

    dataset = wait_dataset(api.client, api.headers, created.json["id"])
    assert dataset["status"] == "ready" and dataset["format"] == "image-folders", dataset["parse_logs"]
    return dataset["id"]


class _ImageServer:
    """A local HTTP server that answers /green.png with an image, /moved with a redirect to it."""

    def __init__(self):
        image = _png(colour=(0, 200, 0))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/green.png")
                    self.end_headers()
                    return
                self.send_response(200 if self.path == "/green.png" else 404)
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_server():
    server = _ImageServer()
    yield server
    server.close()


def test_images_by_base64_and_by_url_through_the_allowed_networks(client_for, image_server):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
    client, headers = api.client, api.headers
    dataset_id = _image_dataset(api)
    added = client.post(f"/datasets/{dataset_id}/samples", headers=headers, json={"samples": [
        {"label": "red", "image": base64.b64encode(_png(size=(10, 6))).decode(), "uid": "b64"},
        {"label": "green", "image_url": f"{image_server.url}/green.png", "uid": "url"}]})
    assert added.status_code == 201, added.json
    stats = added.json["stats"]
    assert stats["rows"] == 6 and stats["labels"] == {"blue": 2, "green": 1, "red": 3}
    assert stats["input_lengths"]["width"]["max"] == 10 and stats["input_lengths"]["height"]["min"] == 6
    rows = client.get(f"/datasets/{dataset_id}/samples", headers=headers).json["data"]
    by_uid = {row.get("uid"): row for row in rows}
    assert by_uid["url"]["image"] == f"images/added/{by_uid['url']['id']}.png"
    # The revision before keeps its images; the one after a removal keeps the others'.
    assert client.get(f"/datasets/{dataset_id}?revision=1", headers=headers).json["stats"]["rows"] == 4
    removed = client.delete(f"/datasets/{dataset_id}/classes/red", headers=headers)
    assert removed.status_code == 200 and removed.json["stats"]["labels"] == {"blue": 2, "green": 1}
    assert removed.json["stats"]["input_lengths"]["width"]["max"] == 8

    for sample, problem in (
            ({"label": "green", "image_url": f"{image_server.url}/moved"}, "redirect"),
            ({"label": "green", "image_url": f"{image_server.url}/missing.png"}, "HTTP 404"),
            ({"label": "green", "image": "not base64!"}, "not valid base64"),
            ({"label": "green", "image": base64.b64encode(b"plain text").decode()}, "not an image"),
            ({"label": "green"}, "one of them"),
            ({"label": "green", "image_url": "file:///etc/passwd"}, "http:// or https://")):
        refused = client.post(f"/datasets/{dataset_id}/samples", headers=headers, json={"samples": [sample]})
        assert refused.status_code == 422 and problem in refused.json["message"], (problem, refused.json)
    assert client.get(f"/datasets/{dataset_id}", headers=headers).json["latest_revision"] == 3


def test_an_image_url_to_a_private_address_is_refused_without_the_allowed_networks(client_for, image_server):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1)
    dataset_id = _image_dataset(api)
    for url in (f"{image_server.url}/green.png", "http://169.254.169.254/latest/meta-data",
                "http://[::ffff:127.0.0.1]/x.png", "http://10.0.0.1/x.png"):
        refused = api.client.post(f"/datasets/{dataset_id}/samples", headers=api.headers,
                                  json={"samples": [{"label": "green", "image_url": url}]})
        assert refused.status_code == 422, refused.json
        assert "INFER_WEBHOOK_ALLOWED_NETWORKS" in refused.json["message"], refused.json
    assert api.client.get(f"/datasets/{dataset_id}", headers=api.headers).json["latest_revision"] == 1


def test_edits_are_checked_as_uploads_and_a_refused_edit_changes_nothing(client_for):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, DATASET_EDIT_MAX_SAMPLES=3, DATASET_MAX_ROWS=14,
                     DATASET_MAX_LABELS=3, DATASET_MAX_LINE_BYTES=200, DATASET_MAX_REVISIONS=3,
                     DATASET_IMAGE_MAX_BYTES=2000, MAX_IMAGE_PIXELS=400, DATASET_EDIT_MAX_URLS=1)
    client, headers = api.client, api.headers
    dataset_id = add_dataset(client, headers, TEXT_ROWS)["id"]
    path = f"/datasets/{dataset_id}/samples"
    for samples, status, problem in (
            ([], 422, "at least one sample"),
            ([{"text": f"t{n}", "label": "pos"} for n in range(4)], 422, "INFER_DATASET_EDIT_MAX_SAMPLES"),
            ([{"text": "a", "label": "pos"}] * 3, 422, "INFER_DATASET_MAX_ROWS"),
            ([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], 422, "INFER_DATASET_MAX_LABELS"),
            ([{"text": "a" * 300, "label": "pos"}], 422, "INFER_DATASET_MAX_LINE_BYTES"),
            ([{"text": "", "label": "pos"}], 422, "Sample 1: empty text"),
            ([{"text": "fine", "label": "pos"}, {"text": "no label"}], 422, "Sample 2: no label"),
            ([{"text": "a", "label": "pos", "colour": "red"}], 422, "colour"),
            ([{"text": "a", "label": "pos", "uid": "x" * 201}], 422, "uid must be text"),
            ([{"text": "a", "label": "pos", "uid": "same"}, {"text": "b", "label": "neg", "uid": "same"}], 422,
             "already in the dataset"),
            (["just text"], 422, "mapping")):
        refused = client.post(path, headers=headers, json={"samples": samples})
        assert refused.status_code == status and problem in refused.json["message"], (problem, refused.json)
    assert client.post(path, headers=headers, json={"rows": []}).status_code == 422
    # Removals: what is not there is a 404 and nothing changes; a classifier keeps two classes.
    missing = client.delete(path, headers=headers, json={"ids": ["s1", "s99"], "uids": ["nobody"]})
    assert missing.status_code == 404 and "id 's99'" in missing.json["message"]
    assert "uid 'nobody'" in missing.json["message"] and "'s1'" not in missing.json["message"]
    assert client.delete(path, headers=headers, json={}).status_code == 422
    assert client.delete(f"/datasets/{dataset_id}/classes/unknown", headers=headers).status_code == 404
    last_class = client.delete(f"/datasets/{dataset_id}/classes/pos", headers=headers)
    assert last_class.status_code == 422 and "at least 2 labels" in last_class.json["message"]
    assert client.get(f"/datasets/{dataset_id}", headers=headers).json["latest_revision"] == 1
    # Revisions are bounded: 3 at most.
    assert client.post(path, headers=headers, json={"samples": [{"text": "a", "label": "pos"}]}).status_code == 201
    assert client.post(path, headers=headers, json={"samples": [{"text": "b", "label": "pos"}]}).status_code == 201
    full = client.post(path, headers=headers, json={"samples": [{"text": "c", "label": "pos"}]})
    assert full.status_code == 409 and "INFER_DATASET_MAX_REVISIONS" in full.json["message"]

    # Images: the same byte and pixel limits as uploads'.
    image_set = _image_dataset(api)
    for image, problem in ((_png(size=(30, 30)), "INFER_MAX_IMAGE_PIXELS"),
                           (b"\x89PNG" + b"\x00" * 3000, "INFER_DATASET_IMAGE_MAX_BYTES")):
        refused = client.post(f"/datasets/{image_set}/samples", headers=headers, json={"samples": [
            {"label": "red", "image": base64.b64encode(image).decode()}]})
        assert refused.status_code == 422 and problem in refused.json["message"], refused.json
    two_urls = client.post(f"/datasets/{image_set}/samples", headers=headers, json={"samples": [
        {"label": "red", "image_url": "http://example.com/1.png"}, {"label": "red", "image_url": "http://example.com/2.png"}]})
    assert two_urls.status_code == 422 and "INFER_DATASET_EDIT_MAX_URLS" in two_urls.json["message"]


def test_a_dataset_not_ready_cannot_be_edited(client_for):
    api = client_for()  # no parser: a dataset sent stays processing
    client, headers = api.client, api.headers
    processing = client.post("/datasets", headers=headers, json={"data": TEXT_ROWS}).json["id"]
    waiting = client.post("/datasets", headers=headers, json={"upload": True}).json["id"]
    for dataset_id in (processing, waiting):
        for answer in (
                client.post(f"/datasets/{dataset_id}/samples", headers=headers,
                            json={"samples": [{"text": "a", "label": "pos"}]}),
                client.delete(f"/datasets/{dataset_id}/samples", headers=headers, json={"ids": ["s1"]}),
                client.delete(f"/datasets/{dataset_id}/classes/pos", headers=headers),
                client.get(f"/datasets/{dataset_id}/samples", headers=headers)):
            assert answer.status_code == 409, answer.json
    assert "edit it once it is ready" in client.delete(f"/datasets/{processing}/classes/pos",
                                                       headers=headers).json["message"]


def test_another_accounts_dataset_and_revisions_answer_404(api):
    client, headers = api.client, api.headers
    dataset_id = add_dataset(client, headers, TEXT_ROWS)["id"]
    assert client.post(f"/datasets/{dataset_id}/samples", headers=headers,
                       json={"samples": [{"text": "a", "label": "pos"}]}).status_code == 201
    mallory = api.headers_for("mallory")
    answers = [
        client.get(f"/datasets/{dataset_id}?revision=1", headers=mallory),
        client.get(f"/datasets/{dataset_id}/revisions", headers=mallory),
        client.get(f"/datasets/{dataset_id}/samples?revision=2", headers=mallory),
        client.post(f"/datasets/{dataset_id}/samples", headers=mallory, json={"samples": [{"text": "a", "label": "x"}]}),
        client.delete(f"/datasets/{dataset_id}/samples", headers=mallory, json={"ids": ["s1"]}),
        client.post(f"/datasets/{dataset_id}/samples/delete", headers=mallory, json={"ids": ["s1"]}),
        client.delete(f"/datasets/{dataset_id}/classes/pos", headers=mallory),
        client.post("/models/mine/train", headers=mallory,
                    json={"task": "text-classification", "dataset_id": dataset_id, "dataset_revision": 1}),
    ]
    missing = client.get("/datasets/ds_0000000000000000/revisions", headers=mallory)
    for answer in answers:
        assert answer.status_code == 404, answer.json
        assert answer.json["message"] == missing.json["message"].replace("ds_0000000000000000", dataset_id)
    assert client.get(f"/datasets/{dataset_id}", headers=headers).json["latest_revision"] == 2


def test_concurrent_edits_are_all_kept(api):
    client, headers = api.client, api.headers
    dataset_id = add_dataset(client, headers, TEXT_ROWS)["id"]
    edits = 6
    start = threading.Barrier(edits)
    answers = [None] * edits

    def edit(number):
        start.wait()
        answers[number] = client.post(f"/datasets/{dataset_id}/samples", headers=headers, json={"samples": [
            {"text": f"concurrent {number}", "label": "pos", "uid": f"c{number}"}]})

    threads = [threading.Thread(target=edit, args=(number,)) for number in range(edits)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [201] * edits, [answer.json for answer in answers]
    assert sorted(answer.json["revision"] for answer in answers) == list(range(2, 2 + edits))
    latest = client.get(f"/datasets/{dataset_id}", headers=headers).json
    assert latest["latest_revision"] == 1 + edits and latest["stats"]["rows"] == 12 + edits
    rows = client.get(f"/datasets/{dataset_id}/samples?limit=100", headers=headers).json["data"]
    assert {row.get("uid") for row in rows} >= {f"c{number}" for number in range(edits)}


@pytest.fixture(scope="module")
def seaweed():
    from ..seaweedfs import seaweed_for_module

    yield from seaweed_for_module("revisions")


def test_on_s3_an_edit_on_one_replica_is_trained_on_by_the_other_and_deleted_everywhere(make_app, tmp_path, seaweed,
                                                                                         monkeypatch):
    import os

    from training.paths import revision_dir
    from web.settings import settings_of

    from ..conftest import new_key

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    shared = {"STORAGE": "s3", "S3_BUCKET": "revisions", "S3_ENDPOINT_URL": seaweed.endpoint, "S3_REGION": "us-east-1",
              "S3_PREFIX": "edits/", "DATABASE_URL": f"sqlite:///{tmp_path}/shared.db"}
    parser = make_app(**shared, DATA_DIR=str(tmp_path / "a"), TRAINER=True, TRAINING_POLL_S=0.1)
    editor = make_app(**shared, DATA_DIR=str(tmp_path / "b"))  # runs no parser and no trainer
    headers = {"x-api-key": new_key(parser, "alice")}
    a, b = parser.test_client(), editor.test_client()
    dataset_id = add_dataset(a, headers, iris_csv(), name="iris")["id"]

    # b has never seen the parsed rows: it fetches revision 1 from the bucket, and stores revision 2 there.
    edited = b.delete(f"/datasets/{dataset_id}/samples", headers=headers, json={"ids": ["s1", "s2", "s3"]})
    assert edited.status_code == 200, edited.json
    assert edited.json["revision"] == 2 and edited.json["stats"]["rows"] == 147
    assert not os.path.exists(revision_dir(settings_of(parser).data_dir, dataset_id, 2))
    keys = [item["Key"] for item in seaweed.client().list_objects_v2(Bucket="revisions", Prefix="edits/")["Contents"]]
    assert f"edits/parsed-datasets/{dataset_id}@2.tar" in keys

    # a trains on revision 2, fetched from the bucket.
    done = wait_job(a, headers, start_job(a, headers, "iris", task="tabular", dataset_id=dataset_id)["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["dataset_revision"] == 2 and done["train_rows"] + done["validation_rows"] == 147
    assert os.path.isfile(os.path.join(revision_dir(settings_of(parser).data_dir, dataset_id, 2), "rows.jsonl"))

    assert a.delete(f"/datasets/{dataset_id}", headers=headers).status_code == 200
    listed = seaweed.client().list_objects_v2(Bucket="revisions", Prefix="edits/").get("Contents", [])
    assert not [item["Key"] for item in listed if dataset_id in item["Key"]]
    assert not os.path.exists(revision_dir(settings_of(parser).data_dir, dataset_id, 2))


def test_revisions_count_in_the_accounts_stored_bytes(client_for):
    from sqlalchemy import select

    from core.tables import Dataset

    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, ACCOUNT_MAX_STORED_MB=1)
    client, headers = api.client, api.headers
    dataset_id = add_dataset(client, headers, TEXT_ROWS)["id"]

    def stored() -> int:
        with api.app.extensions["db"].sessions() as session:
            return session.scalar(select(Dataset.stored_bytes).where(Dataset.id == dataset_id))

    uploaded = stored()
    text = "x" * 100_000
    added = client.post(f"/datasets/{dataset_id}/samples", headers=headers,
                        json={"samples": [{"text": text, "label": "pos"}, {"text": text, "label": "neg"}]})
    assert added.status_code == 201, added.json
    assert stored() > uploaded + 200_000  # the new revision's rows, counted
    # Each revision copies the rows: the next copies take the account past its 1 MiB.
    answers = [client.post(f"/datasets/{dataset_id}/samples", headers=headers,
                           json={"samples": [{"text": text, "label": "pos"}]}) for _ in range(4)]
    refused = [answer for answer in answers if answer.status_code != 201]
    assert refused and refused[0].status_code == 403, [answer.json for answer in answers]
    assert "INFER_ACCOUNT_MAX_STORED_MB" in refused[0].json["message"]
    assert stored() <= 2**20
    revisions = client.get(f"/datasets/{dataset_id}/revisions", headers=headers).json
    assert len(revisions) == 1 + 1 + len(answers) - len(refused)
