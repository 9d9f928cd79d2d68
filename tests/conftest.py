"""Shared fixtures: apps on SQLite or a real PostgreSQL, keys, tiny models, a live server."""

import os
import tempfile

# The hub is unreachable here: never try it, and start from an empty HF cache so
# resolution is decided only by what the tests provide. Set before any HF import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="infer-test-hf-")
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
for _name in list(os.environ):
    if _name.startswith("INFER_") or _name == "DATABASE_URL":
        del os.environ[_name]
# ONNX exports are keyed by the model's files and library versions, so every app and
# server of the session shares one folder: the packaged MiniLM is exported once, not
# once per test's data dir (INFER_BACKEND=auto serves it on ONNX).
os.environ["INFER_ONNX_CACHE_DIR"] = tempfile.mkdtemp(prefix="infer-test-onnx-")

import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from app import create_app  # noqa: E402
from core.keys import create_key  # noqa: E402

from . import tiny_models  # noqa: E402
from .postgres import PostgresServer  # noqa: E402
from .tiny_models import build_tiny_sentence_transformer  # noqa: E402


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def make_app(tmp_path):
    """Build an app with test settings; later keyword arguments override."""

    apps = []

    def _make(**overrides):
        # No build thread unless a test asks for one: it would outlive the test.
        config = {"DATA_DIR": str(tmp_path / "data"), "BOOTSTRAP_KEY": False, "TESTING": True, "BUILDER": False,
                  "TRAINER": False, "PREDICTIONS": False}
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["builder"].stop()
        app.extensions["dataset_parses"].stop()
        app.extensions["training"].stop()
        app.extensions["predictions"].stop()
        app.extensions["batches"].stop()
        app.extensions["evaluations"].stop()
        if "unloading_stale" in app.extensions:
            app.extensions["unloading_stale"].set()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def new_key(app, account: str) -> str:
    with app.extensions["db"].sessions() as session:
        _row, key = create_key(session, account)
    return key


class ApiClient:
    """An app, its test client and alice's key, as headers."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.key = new_key(app, "alice")
        self.headers = {"x-api-key": self.key}

    def headers_for(self, account: str) -> dict:
        """Headers with a new key of `account` (another account's, say)."""
        return {"x-api-key": new_key(self.app, account)}


@pytest.fixture
def client_for(make_app):
    """client_for(**config): an ApiClient for an app with these settings (see make_app)."""
    return lambda **config: ApiClient(make_app(**config))


@pytest.fixture
def api_key(app):
    return new_key(app, "alice")


@pytest.fixture
def headers(api_key):
    return {"x-api-key": api_key}


@pytest.fixture(scope="session")
def tiny_sentence_model_dir(tmp_path_factory):
    """A random-weight sentence-transformer folder (BERT, 2 layers, 32 dims)."""
    path = tmp_path_factory.mktemp("tiny-st") / "model"
    build_tiny_sentence_transformer(str(path))
    return str(path)


def until(condition, timeout_s: float = 10) -> None:
    """Wait until `condition()` holds, for a state another thread reaches that no event
    announces (a request it sent is queued). It polls; it orders nothing by time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def metric_value(metrics_text: str, sample: str) -> float:
    """The value of one sample (name with labels) in Prometheus text, 0 if absent."""
    for line in metrics_text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


# tiny model builder -> the catalogue model keys it stands in for
STAND_INS = {
    "nli": ["bart-large-mnli", "xlm-roberta-large-xnli"],
    "emotion_classifier": ["roberta-base-go_emotions"],
    "extractive_qa": ["distilbert-base-cased-distilled-squad"],
    "seq2seq": ["distilbart-cnn-12-6", "t5-base-qa-summary-emotion"],
    "causal_lm": ["gpt2-large"],
    "clip": ["clip-vit-base-patch32"],
    "cross_encoder": ["ms-marco-MiniLM-L6-v2"],
}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """{builder name: folder of that tiny model}."""
    root = tmp_path_factory.mktemp("tiny-models")
    built = {}
    for name in STAND_INS:
        path = str(root / name)
        getattr(tiny_models, f"build_tiny_{name}")(path)
        built[name] = path
    return built


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("model-dir")
    for name, keys in STAND_INS.items():
        for key in keys:
            shutil.copytree(tiny_dir[name], os.path.join(root, key))
    return str(root)


class LiveServer:
    """The app behind a real threaded HTTP server on 127.0.0.1, for concurrency tests."""

    def __init__(self, app):
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._thread.join(timeout=10)


# --- the `slow` marker: `scripts/test -m "not slow"` is the day-to-day subset -------------
# A test is slow when it starts something heavy: a server process (gunicorn, PostgreSQL,
# Redis, nginx, HAProxy, SeaweedFS), Chromium, a sandbox (the build, dataset and training
# loops, which run uploaded code, parses and training jobs in bubblewrap) or a real
# pretrained model (`packaged_model`). It is decided here, from the names the test's
# code uses, its fixtures' and the helpers of tests/ they call, so that a new test that
# starts one of those is marked without anyone remembering to.

# Helper modules of tests/ that start a server (an import of one, even inside a function).
SERVER_MODULES = {"gunicorn", "postgres", "redis_server", "nginx", "haproxy", "seaweedfs", "topology",
                  "playwright"}
# What starts one: the helpers' entry points, and the settings that turn on the background
# loops running builds and training jobs (every test that turns them on sets their poll).
SLOW_NAMES = {"production_server", "start_production_server", "PostgresServer", "RedisServer", "Nginx", "HAProxy",
              "SeaweedS3", "seaweed_for_module", "Topology", "BUILD_POLL_S", "TRAINING_POLL_S"}
SERVER_FIXTURES = {"postgres", "redis_server", "browser", "live"}
SLOW_FOLDERS = ("sandbox", "replicas", "queue", os.path.join("ui", "browser"))
TESTS_ROOT = os.path.dirname(os.path.abspath(__file__))


def _names_in(code) -> set[str]:
    """The names a code object uses (globals, attributes, imports, keyword and dict-key
    strings), its nested functions' included."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, str):
            names.add(constant)
        elif isinstance(constant, tuple):
            names.update(item for item in constant if isinstance(item, str))
        elif hasattr(constant, "co_names"):
            names |= _names_in(constant)
    return names


def _refers_to_slow(function, seen: set) -> bool:
    """Whether `function`, or a function of tests/ it names, uses a slow name."""
    function = getattr(function, "__wrapped__", function)
    code = getattr(function, "__code__", None)
    if code is None or code in seen or not code.co_filename.startswith(TESTS_ROOT):
        return False
    seen.add(code)
    names = _names_in(code)
    if names & SLOW_NAMES or any(name.rpartition(".")[2] in SERVER_MODULES for name in names):
        return True
    scope = getattr(function, "__globals__", {})
    return any(_refers_to_slow(scope[name], seen) for name in names if callable(scope.get(name)))


def _is_slow(item) -> bool:
    relative = os.path.relpath(str(item.path), TESTS_ROOT)
    if relative.startswith(tuple(folder + os.sep for folder in SLOW_FOLDERS)):
        return True
    if item.get_closest_marker("packaged_model") or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("database_url") == "postgresql":
        return True
    seen: set = set()
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for definitions in (info.name2fixturedefs.values() if info else ()):
        functions += [definition.func for definition in definitions]
    return any(_refers_to_slow(function, seen) for function in functions if function is not None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
