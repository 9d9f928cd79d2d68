"""Responses are written by orjson: same values, integer keys and numpy allowed."""

import json

import numpy as np


def test_floats_round_trip_exactly_and_numpy_values_are_written(app):
    vector = np.random.default_rng(0).random(384, dtype=np.float32)
    with app.app_context():
        response = app.json.response({"list": vector.tolist(), "array": vector, 0: "integer key"})
    body = json.loads(response.get_data())
    assert response.mimetype == "application/json"
    assert body["list"] == vector.tolist()  # float64 form of each float32, bit for bit
    assert np.array_equal(np.asarray(body["array"], dtype=np.float32), vector)
    assert body["0"] == "integer key"


def test_per_item_validation_errors_keep_their_index_keys(client, headers):
    response = client.post("/text-vectorisation", json={"text": ["fine", 3]}, headers=headers)
    assert response.status_code == 422
    assert response.json["errors"]["text"] == {"1": ["Not a valid string."]}
