"""The ONNX backend of text vectorisers: torch's vectors over HTTP, an export made once and
kept, rebuilt when the model or a library changes, and the int8 accuracy gate.

all-MiniLM-L6-v2 is exported once per session (about 8 s); the cache and gate tests use
the tiny sentence model, each in a cache folder of its own.
"""

import json
import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from model_registry.catalogue import MODELS, UPLOADED, ModelSpec
from model_registry.loaders import sentence_transformer_onnx
from model_registry.loaders.common import LoadSettings
from model_registry.loaders.sentence_transformer import load_sentence_transformer
from model_registry.onnx_export import IN_MODEL_DIR, cache_root, library_versions

from ..tiny_models import packaged_minilm_dir

MINILM = MODELS["all-MiniLM-L6-v2"]
TINY = ModelSpec("tiny-vectors", "tiny", "tiny", "sentence-transformer", "a test model")
SENTENCES = ["iPhone 12 128GB", "RTX 3090", "The meaning of life is 42.", "Ein mehrsprachiger Satz.",
             "A much longer sentence, " * 12 + "to mix the lengths in one batch.", "ok"]


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="session")
def minilm_exports(tmp_path_factory):
    """An export cache holding all-MiniLM-L6-v2's ONNX export, made once per session."""
    cache = str(tmp_path_factory.mktemp("onnx-cache"))
    served = load_sentence_transformer(MINILM, packaged_minilm_dir(), "cpu", False,
                                       LoadSettings(backend="onnx", onnx_cache_dir=cache))
    assert served.backend == "onnx"
    return cache


@pytest.fixture
def exports(monkeypatch):
    """The exports made during a test (calls to the exporter)."""
    made = []
    real = sentence_transformer_onnx.export_module

    def counting(*args, **kwargs):
        made.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(sentence_transformer_onnx, "export_module", counting)
    return made


def onnx_settings(cache, **more) -> LoadSettings:
    return LoadSettings(backend="onnx", onnx_cache_dir=str(cache), **more)


def vectorise(served, texts):
    return served.runners["text-vectorisation"](texts)


@pytest.mark.packaged_model
@pytest.mark.parametrize("text", [SENTENCES[0], SENTENCES], ids=["single", "batch"])
def test_onnx_vectors_over_http_equal_torch_vectors(client_for, minilm_exports, exports, text):
    # A small token budget: the batch is cut into several passes, each padded on its own.
    on_onnx = client_for(BACKEND="onnx", ONNX_CACHE_DIR=minilm_exports, BATCH_MAX_TOKENS=40)
    on_torch = client_for(BACKEND="torch")

    body = {"text": text, "model": "english"}
    got = on_onnx.client.post("/text-vectorisation", json=body, headers=on_onnx.headers)
    want = on_torch.client.post("/text-vectorisation", json=body, headers=on_torch.headers)

    assert got.status_code == want.status_code == 200
    assert on_onnx.app.extensions["models"].get("text-vectorisation", "english").backend == "onnx"
    assert on_torch.app.extensions["models"].get("text-vectorisation", "english").backend == "torch"
    assert np.shape(got.json["vector"]) == np.shape(want.json["vector"])
    assert np.all(cosines(got.json["vector"], want.json["vector"]) >= 0.9999)
    assert exports == []  # the session's export was reused, not made again


def test_auto_serves_catalogue_vectorisers_on_onnx_and_uploaded_models_and_gpus_on_torch(
        tiny_sentence_model_dir, tmp_path):
    auto = LoadSettings(backend="auto", onnx_cache_dir=str(tmp_path / "cache"))
    catalogue = load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False, auto)
    uploaded = ModelSpec("alice/vectors", "alice/vectors", UPLOADED, "sentence-transformer", "user model")
    users = load_sentence_transformer(uploaded, tiny_sentence_model_dir, "cpu", False, auto)
    assert (catalogue.backend, users.backend) == ("onnx", "torch")
    # Their exports would take disk outside the account's storage quota; an explicit
    # INFER_BACKEND=onnx still exports them.
    assert auto.backend_for("alice/vectors", "cpu", auto="torch") == "torch"
    assert LoadSettings(backend="onnx").backend_for("alice/vectors", "cpu", auto="torch") == "onnx"
    # ONNX Runtime's CPU provider only: auto means torch on a GPU, without a warning.
    assert auto.backend_for(TINY.key, "cuda", auto="onnx") == "torch"
    # An override names a backend for one model, over auto.
    pinned = LoadSettings(backend="auto", backend_overrides=((TINY.key, "torch"),))
    assert pinned.backend_for(TINY.key, "cpu", auto="onnx") == "torch"


def test_the_service_default_is_auto():
    from core.settings import Settings

    assert LoadSettings.from_config(Settings()).backend == "auto"


def test_the_export_is_reused_and_rebuilt_when_a_library_or_the_model_changes(
        tiny_sentence_model_dir, tmp_path, exports, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(tiny_sentence_model_dir, model)
    cache = tmp_path / "cache"
    first = load_sentence_transformer(TINY, str(model), "cpu", False, onnx_settings(cache))
    again = load_sentence_transformer(TINY, str(model), "cpu", False, onnx_settings(cache))
    assert first.backend == again.backend == "onnx"
    assert len(exports) == 1  # the second load found the first one's export
    assert vectorise(first, SENTENCES) == vectorise(again, SENTENCES)
    [built] = [path.name for path in cache.iterdir() if path.is_dir()]

    newer = {**library_versions(), "onnxruntime": "99.0"}
    monkeypatch.setattr(sentence_transformer_onnx, "library_versions", lambda: newer)
    load_sentence_transformer(TINY, str(model), "cpu", False, onnx_settings(cache))
    assert len(exports) == 2
    [rebuilt] = [path.name for path in cache.iterdir() if path.is_dir()]
    assert rebuilt != built  # the old export was removed

    (model / "modules.json").write_text((model / "modules.json").read_text() + "\n")  # a new revision
    load_sentence_transformer(TINY, str(model), "cpu", False, onnx_settings(cache))
    assert len(exports) == 3


def test_concurrent_first_loads_export_once(tiny_sentence_model_dir, tmp_path, exports):
    start = threading.Barrier(3)

    def load(_):
        start.wait()
        return load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False, onnx_settings(tmp_path))

    with ThreadPoolExecutor(3) as pool:
        loaded = list(pool.map(load, range(3)))

    assert len(exports) == 1
    assert [served.backend for served in loaded] == ["onnx"] * 3
    assert vectorise(loaded[0], SENTENCES) == vectorise(loaded[2], SENTENCES)


def test_a_model_that_does_not_export_is_served_with_torch_and_not_tried_again(
        tiny_sentence_model_dir, tmp_path, monkeypatch, caplog):
    tries = []

    def failing(*args, **kwargs):
        tries.append(1)
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(sentence_transformer_onnx, "export_module", failing)
    with caplog.at_level(logging.WARNING):
        first = load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False, onnx_settings(tmp_path))
        again = load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False, onnx_settings(tmp_path))

    assert first.backend == again.backend == "torch"
    assert len(vectorise(first, SENTENCES)) == len(SENTENCES)
    assert tries == [1]  # the failure is kept with the export's key
    assert any("tiny-vectors: not served on ONNX" in record.getMessage() and "aten::frobnicate" in record.getMessage()
               for record in caplog.records)


def test_exports_are_kept_beside_the_operators_models_else_in_the_data_dir(tmp_path):
    model_dir, data_dir = tmp_path / "models", tmp_path / "data"
    (model_dir / "english").mkdir(parents=True)

    assert cache_root(str(model_dir / "english"), "", str(model_dir), str(data_dir)) == str(
        model_dir / "english" / IN_MODEL_DIR)
    # A packaged model's folder (site-packages) is not the operator's, nor is a user model's.
    assert cache_root(packaged_minilm_dir(), "", str(model_dir), str(data_dir)) == str(data_dir / "onnx")
    assert cache_root(str(data_dir / "user_models" / "7" / "files"), "", str(model_dir), str(data_dir)) == str(
        data_dir / "onnx")
    assert cache_root(str(model_dir / "english"), "/shared/onnx", str(model_dir), str(data_dir)) == "/shared/onnx"


def int8_cosine(cache, preset: str) -> float:
    [manifest] = [path / "manifest.json" for path in cache.iterdir() if f"-int8-{preset}-" in path.name]
    return json.loads(manifest.read_text())["worst_cosine"]


def test_the_int8_gate_serves_a_model_at_the_threshold_and_refuses_it_above(
        tiny_sentence_model_dir, tmp_path, caplog):
    fp32 = load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False, onnx_settings(tmp_path))
    quantised = load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False,
                                          onnx_settings(tmp_path, int8="all", int8_min_cosine=0.0))
    cosine = int8_cosine(tmp_path, "all")
    assert 0 < cosine < 1
    at_threshold = load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False,
                                             onnx_settings(tmp_path, int8="all", int8_min_cosine=cosine))
    with caplog.at_level(logging.ERROR):
        refused = load_sentence_transformer(TINY, tiny_sentence_model_dir, "cpu", False,
                                            onnx_settings(tmp_path, int8="all", int8_min_cosine=cosine + 1e-6))

    assert quantised.backend == at_threshold.backend == "onnx-int8:all"
    assert vectorise(quantised, SENTENCES) != vectorise(fp32, SENTENCES)
    assert np.min(cosines(vectorise(quantised, SENTENCES), vectorise(fp32, SENTENCES))) >= cosine - 1e-6
    assert refused.backend == "onnx"
    assert vectorise(refused, SENTENCES) == vectorise(fp32, SENTENCES)  # its fp32 export serves
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert "tiny-vectors" in message and f"{cosine:.4f}" in message and "INFER_ONNX_INT8_MIN_COSINE" in message


@pytest.mark.packaged_model
def test_on_minilm_int8_of_every_matmul_is_refused_and_of_inner_attention_served(minilm_exports):
    """The search in the issue note: quantising every MatMul loses too much on short
    inputs (worst cosine ~0.945); the attention projections of layers 1-4 keep ~0.9935."""
    settings = onnx_settings(minilm_exports, int8="all")
    assert load_sentence_transformer(MINILM, packaged_minilm_dir(), "cpu", False, settings).backend == "onnx"
    settings = onnx_settings(minilm_exports, int8="attention-inner")
    served = load_sentence_transformer(MINILM, packaged_minilm_dir(), "cpu", False, settings)
    assert served.backend == "onnx-int8:attention-inner"
    assert int8_cosine(Path(minilm_exports), "all") < 0.99 <= int8_cosine(Path(minilm_exports), "attention-inner")
