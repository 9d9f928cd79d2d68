"""A Hugging Face folder whose weights lack the head its declared task needs fails
its build, naming the missing weights, instead of serving a random head."""

import pytest

from tests import tiny_models

from .helpers import deploy, hf_folder_zip


@pytest.fixture
def service(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    return api.client, api.headers


def test_a_t5_declared_as_qa_fails_its_build_naming_the_missing_head(service, tmp_path):
    client, headers = service
    folder = str(tmp_path / "t5")
    tiny_models.build_tiny_t5(folder)

    details = deploy(client, headers, "t5-as-qa", hf_folder_zip(folder, ["qa"]))

    assert details["build_status"] == "fail"
    message = details["build_message"]
    assert message.startswith("The checkpoint has no weights for qa_outputs.bias, qa_outputs.weight"), message
    assert "Upload a checkpoint trained for qa" in message
    answer = client.post("/qa", json={"question": "q?", "context": "c.", "model": "t5-as-qa"}, headers=headers)
    assert answer.status_code == 404  # never served
