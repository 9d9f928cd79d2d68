"""A failed build tells its author what to fix: the step that failed, their
exception and the file and line in *their* archive; the build log keeps their
traceback, their model's output and pip's, and nothing of the service's (its
paths, its frames, its internal model keys, Python's `^^^^` markers). A model
whose code raises while serving answers the same way."""

import json
import os
import re

import pytest

from uploads.build_errors import SERVICE_FRAMES, SERVICE_ROOT, Scrubber
from web.settings import settings_of

from .helpers import deploy, make_zip, pickle_zip

CONFIG = json.dumps({"description": "fails on purpose", "tasks": ["custom"]})
CALL_MODEL = "def call_model(model, task_input, task):\n    return {'ok': True}\n"


def _service_text_in(text: str, data_dir: str) -> list[str]:
    """What of the service shows in `text`."""
    found = [needle for needle in (data_dir, os.path.realpath(data_dir), SERVICE_ROOT, "site-packages",
                                   "dist-packages", "/opt/infer", "user_worker.py", "^^^^") if needle in text]
    found += re.findall(r"\buser-\d+\b", text)
    return found


def _build(client_for, name: str, files: dict, **settings):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, SANDBOX_INSTALL_NETWORK="none", **settings)
    details = deploy(api.client, api.headers, name, make_zip({"config.json": CONFIG, **files}))
    log = api.client.get(f"/models/{name}/build-log", headers=api.headers).json["log"]
    return api, details, log


FAILING_MODELS = {
    "syntax-error": (
        {"inference.py": "def load_model(model_dir):\n    return 1 +\n" + CALL_MODEL},
        ["Importing inference.py failed at inference.py line 2: SyntaxError: invalid syntax"],
        ['File "inference.py", line 2', "return 1 +", "SyntaxError: invalid syntax"],
    ),
    "import-error": (
        {"inference.py": "import no_such_module_here\n\ndef load_model(model_dir):\n    return 1\n" + CALL_MODEL},
        ["Importing inference.py failed at inference.py line 1: ModuleNotFoundError: No module named "
         "'no_such_module_here' (add it to requirements.txt)"],
        ['File "inference.py", line 1, in <module>', "import no_such_module_here"],
    ),
    "load-raises": (
        {"inference.py": "from lib.weights import read\n\ndef load_model(model_dir):\n    return read(model_dir)\n"
                         + CALL_MODEL,
         "lib/__init__.py": "",
         "lib/weights.py": "def read(folder):\n    raise ValueError('no weights in ' + folder)\n"},
        ["load_model() failed at lib/weights.py line 2 (in read): ValueError: no weights in .",
         "The build log has the traceback."],
        ['File "inference.py", line 4, in load_model', 'File "lib/weights.py", line 2, in read',
         "raise ValueError('no weights in ' + folder)"],
    ),
    "sample-raises-in-a-library": (
        {"inference.py": "import json\n\ndef load_model(model_dir):\n    return None\n\n"
                         "def call_model(model, task_input, task):\n    return json.loads('{not json')\n"},
        ["call_model() failed on the custom input at inference.py line 7 (in call_model): JSONDecodeError:"],
        ['File "inference.py", line 7, in call_model', "[library] json/decoder.py"],
    ),
    "missing-file": (
        {"inference.py": "def load_model(model_dir):\n    return open('weights.bin').read()\n" + CALL_MODEL},
        ["load_model() failed at inference.py line 2 (in load_model): FileNotFoundError:", "'weights.bin'",
         "is the file in the archive?"],
        ["FileNotFoundError: [Errno 2] No such file or directory: 'weights.bin'"],
    ),
    "no-load-model": (
        {"inference.py": "def load(model_dir):\n    return 1\n" + CALL_MODEL},
        ["inference.py must define load_model(model_dir); it defines no such function."],
        ["inference.py must define load_model(model_dir)"],
    ),
    "pickle-needs-a-module": (
        {"model.bin": b"cno_such_pickled_pkg\nModel\n."},
        ["Unpickling model.bin failed: ModuleNotFoundError: No module named 'no_such_pickled_pkg' "
         "(add it to requirements.txt)."],
        ["ModuleNotFoundError: No module named 'no_such_pickled_pkg'"],
    ),
    "bad-requirement": (
        {"inference.py": "def load_model(model_dir):\n    return 1\n" + CALL_MODEL,
         "requirements.txt": "no-such-package-0451==1.0\n"},
        ["installing requirements.txt failed: Could not find a version that satisfies the requirement "
         "no-such-package-0451==1.0 (from versions: none); No matching distribution found for "
         "no-such-package-0451==1.0", "Check each line's package name and version"],
        ["ERROR: No matching distribution found for no-such-package-0451==1.0"],
    ),
}


@pytest.mark.parametrize("case", FAILING_MODELS)
def test_a_failed_build_names_the_authors_file_line_and_exception_and_nothing_of_the_service(client_for, case):
    files, message_says, log_says = FAILING_MODELS[case]

    api, details, log = _build(client_for, case, files)

    assert details["build_status"] == "fail"
    message = details["build_message"]
    for words in message_says:
        assert words in message, message
    for words in log_says:
        assert words in log, log
    assert len(message) < 600 and "Traceback" not in message  # a sentence or two, not a dump
    data_dir = settings_of(api.app).data_dir
    assert _service_text_in(message, data_dir) == [], message
    assert _service_text_in(log, data_dir) == [], log


def test_a_successful_builds_log_shows_pips_answers_without_the_services_paths(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, SANDBOX_INSTALL_NETWORK="none")
    details = deploy(api.client, api.headers, "pickled", pickle_zip())  # requires cloudpickle, which the service has
    log = api.client.get("/models/pickled/build-log", headers=api.headers).json["log"]

    assert details["build_status"] == "success", details["build_message"]
    assert "Requirement already satisfied: cloudpickle in [installed packages]" in log
    assert _service_text_in(log, settings_of(api.app).data_dir) == [], log


def test_the_build_log_keeps_what_the_model_printed_in_its_own_paths(client_for):
    source = ("import sys, warnings\nprint('loading weights, step 1')\nwarnings.warn('old weights format')\n\n"
              "def load_model(model_dir):\n    print('model at', __file__, file=sys.stderr)\n"
              "    raise RuntimeError('bad checkpoint')\n" + CALL_MODEL)

    api, details, log = _build(client_for, "chatty", {"inference.py": source})

    assert "load_model() failed at inference.py line 7 (in load_model): RuntimeError: bad checkpoint" \
        in details["build_message"]
    assert "loading weights, step 1" in log
    assert "inference.py:3: UserWarning: old weights format" in log
    assert "model at inference.py" in log
    assert log.index("loading weights") < log.index("RuntimeError: bad checkpoint")
    assert _service_text_in(log, settings_of(api.app).data_dir) == [], log


def test_service_paths_a_model_prints_are_scrubbed_from_its_log(client_for, tmp_path):
    # A model cannot see the service's paths in its sandbox; this one is written knowing them,
    # as a leak through some library might: the service's pass still rewrites them.
    fake = (f'Traceback (most recent call last):\n  File "{SERVICE_ROOT}/uploads/builder.py", line 9, in build\n'
            f'    self._build_steps()\n    ^^^^^^^^^^^^^^^^^^\n'
            '  File "/model/inference.py", line 3, in load_model\n'
            f'    boom()\nKeyError: Model user-1 at {tmp_path}/data/secrets.db')
    source = f"import sys\nsys.stderr.write({fake!r} + '\\n')\n\ndef load_model(model_dir):\n    return 1\n" + CALL_MODEL

    api, details, log = _build(client_for, "liar", {"inference.py": source})

    assert details["build_status"] == "success", details["build_message"]
    assert f"{SERVICE_FRAMES}\n" in log
    assert '  File "inference.py", line 3, in load_model\n    boom()' in log
    assert "KeyError: The model at [service]" in log
    assert _service_text_in(log, settings_of(api.app).data_dir) == [], log


def test_a_model_that_raises_while_serving_answers_its_file_and_line_not_service_names(client_for):
    source = ("def load_model(model_dir):\n    return None\n\ndef call_model(model, task_input, task):\n"
              "    if task_input.get('fail'):\n        raise KeyError('colour')\n    return {'ok': True}\n")
    api, details, _log = _build(client_for, "moody", {"inference.py": source})
    assert details["build_status"] == "success", details["build_message"]

    answer = api.client.post("/custom", json={"model": "moody", "fail": True}, headers=api.headers)

    assert answer.status_code == 502
    assert answer.json["message"] == ("call_model() failed on the custom input at inference.py line 6 "
                                      "(in call_model): KeyError: 'colour'.")


def test_a_build_that_overruns_its_load_timeout_names_the_setting(client_for):
    source = "import time\n\ndef load_model(model_dir):\n    time.sleep(60)\n" + CALL_MODEL

    api, details, log = _build(client_for, "sleepy", {"inference.py": source}, WORKER_LOAD_TIMEOUT_S=1)

    assert details["build_message"] == ("The model did not answer within 1s while loading "
                                        "(INFER_WORKER_LOAD_TIMEOUT_S).")
    assert _service_text_in(log, settings_of(api.app).data_dir) == [], log


def test_the_scrubber_folds_service_frames_and_rewrites_paths(tmp_path):
    files_dir = f"{tmp_path}/data/user_models/8/files"
    scrub = Scrubber(files_dir, f"{tmp_path}/data/user_models/8/venv", f"{tmp_path}/data")
    text = (
        "Traceback (most recent call last):\n"
        f'  File "{SERVICE_ROOT}/uploads/builder.py", line 195, in build\n'
        "    result = self._build_steps(version_id)\n"
        "             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        '  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed\n'
        f'  File "{files_dir}/pkg/model.py", line 12, in load\n'
        "    import foo\n"
        '  File "/venv/lib/python3.11/site-packages/foo/__init__.py", line 3, in <module>\n'
        "    raise ImportError('needs bar')\n"
        f"ImportError: needs bar (Model user-8, see {tmp_path}/data/keys.db)\n"
        f"Requirement already satisfied: numpy in {SERVICE_ROOT}/.venv/lib/python3.11/site-packages (1.26)\n"
        # pip shows a path below its working folder (the sandbox's /tmp) relative to it: a service under /tmp.
        "Requirement already satisfied: scipy in ./ci-clone/.venv/lib/python3.11/site-packages (1.15)\n"
    )
    below_tmp = Scrubber(files_dir, data_dir="/tmp/ci-clone/data")

    scrubbed = scrub.text(text)

    assert scrubbed.splitlines() == [
        "Traceback (most recent call last):",
        SERVICE_FRAMES,
        '  File "pkg/model.py", line 12, in load',
        "    import foo",
        "  [library] foo/__init__.py, line 3, in <module>",
        "ImportError: needs bar (The model, see [service])",
        "Requirement already satisfied: numpy in [installed packages] (1.26)",
        "Requirement already satisfied: scipy in [installed packages] (1.15)",
    ]
    # A relative path into the service (its data dir under /tmp here) is the service's too; a model's own stays.
    assert below_tmp.line("see ./ci-clone/data/keys.db and ./weights.bin") == "see [service] and ./weights.bin"
    assert scrub.line(f"No such file: '/model/weights.bin' or '{files_dir}/a/b.txt'") == \
        "No such file: 'weights.bin' or 'a/b.txt'"
