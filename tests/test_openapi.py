"""openapi.yaml is generated from the code; this fails when the two drift apart."""

import pathlib

import yaml

from app.openapi import generate, render

COMMITTED = pathlib.Path(__file__).parent.parent / "openapi.yaml"


def test_committed_openapi_matches_the_code():
    generated = generate()
    committed = yaml.safe_load(COMMITTED.read_text())
    assert committed == generated, "openapi.yaml is stale: run `python -m app.openapi > openapi.yaml`"
    assert COMMITTED.read_text() == render(generated)


def test_every_task_is_documented_with_its_key_requirement():
    spec = generate()
    assert spec["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]  # either one
    body = spec["paths"]["/text-vectorisation"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TextVectorisationBody"}
    text = spec["components"]["schemas"]["TextVectorisationBody"]["properties"]["text"]
    assert [option["type"] for option in text["oneOf"]] == ["string", "array"]
