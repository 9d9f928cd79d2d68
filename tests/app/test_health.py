"""/healthz, /readyz (database and preload list) and /metrics."""

import shutil
import time


def wait_ready(client, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        response = client.get("/readyz")
        if response.json["checks"]["models"] != "preloading":
            return response
        time.sleep(0.1)
    raise AssertionError("preload did not finish")


def test_healthz_answers(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_is_ready_with_a_reachable_database_and_no_preload(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["database"] == "ok"


def test_readyz_waits_for_the_preload_list(make_app, tiny_sentence_model_dir, tmp_path):
    shutil.copytree(tiny_sentence_model_dir, tmp_path / "models" / "multilingual")
    app = make_app(MODEL_DIR=str(tmp_path / "models"), PRELOAD_MODELS="text-vectorisation:multilingual")

    response = wait_ready(app.test_client())

    assert response.status_code == 200
    assert response.json["checks"]["loaded_models"] == ["paraphrase-multilingual-MiniLM-L12-v2"]


def test_readyz_is_503_when_a_preloaded_model_cannot_load(make_app):
    app = make_app(PRELOAD_MODELS="text-vectorisation:multilingual, no-such-model")

    response = wait_ready(app.test_client())

    assert response.status_code == 503
    problems = response.json["checks"]["models"]
    assert "not available" in problems["text-vectorisation:multilingual"]
    assert "unknown model" in problems["no-such-model"]


def test_a_database_outage_is_503_once_longer_than_the_grace_and_readyz_says_so(client_for):
    from ..postgres import PostgresServer

    server = PostgresServer()  # its own server, so stopping it harms no other test
    server.start()
    try:
        url = server.new_database()
        api = client_for(DATABASE_URL=url, READY_DB_GRACE_S=0)
        patient = client_for(DATABASE_URL=url, READY_DB_GRACE_S=3600).client  # a blip shorter than its grace
        client, headers = api.client, api.headers
        assert client.get("/keys", headers=headers).status_code == 200
        assert patient.get("/readyz").status_code == 200
    finally:
        server.stop()

    ready = client.get("/readyz")
    still_ready = patient.get("/readyz")
    request = client.get("/keys", headers=headers)

    assert ready.status_code == 503 and "unreachable" in ready.json["checks"]["database"]
    assert still_ready.status_code == 200, still_ready.json
    assert "unreachable" in still_ready.json["checks"]["database"]
    assert "INFER_READY_DB_GRACE_S" in still_ready.json["checks"]["database"]
    assert request.status_code == 503
    assert request.json["message"] == "The database is unreachable; retry shortly."
    assert request.headers["Retry-After"] == "5"
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_is_ready_again_when_the_database_comes_back_within_the_grace(client_for):
    from ..postgres import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        client = client_for(DATABASE_URL=server.new_database(), READY_DB_GRACE_S=3600).client
        server.pause()
        during = client.get("/readyz")
        server.resume()
        after = client.get("/readyz")
    finally:
        server.stop()

    assert during.status_code == 200 and "unreachable" in during.json["checks"]["database"]
    assert after.status_code == 200 and after.json["checks"]["database"] == "ok"


def test_metrics_count_requests_errors_and_latency(client, headers):
    client.post("/text-vectorisation", json={"text": 1}, headers=headers)
    text = client.get("/metrics").data.decode()

    assert 'infer_requests_total{endpoint="/text-vectorisation",method="POST",status="422"}' in text
    assert 'infer_request_errors_total{endpoint="/text-vectorisation",status="422"}' in text
    assert 'infer_request_seconds_bucket{endpoint="/text-vectorisation",le="0.005"}' in text
    assert text.startswith("# HELP")


def test_swagger_ui_and_openapi_json_are_served_with_no_internet(client):
    page = client.get("/docs")
    assert page.status_code == 200
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/docs/assets/{asset}" in page.get_data(as_text=True)
        served = client.get(f"/docs/assets/{asset}")
        assert served.status_code == 200 and len(served.data) > 1000
    assert "cdn" not in page.get_data(as_text=True)
    assert client.get("/docs/assets/../config.py").status_code == 404
    spec = client.get("/openapi.json").json
    assert "/text-vectorisation" in spec["paths"]
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "x-api-key"
