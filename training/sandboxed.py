"""How a training or dataset-parse child is started: in the sandbox of
sandbox/runner.py, as uploaded code is.

Both children read files that strangers upload (CSV, JSON Lines, zips of
images, and the models trained on them), with parsing libraries that a crafted
file might subvert. So each runs under a sandbox uid of its account's own
(as root; see `uid_for`), in a control group of its own with a memory limit
(TRAINING_MEMORY_MB or DATASET_PARSE_MEMORY_MB) and a process limit, without a
network, with an environment built from scratch, and sees only:

- the system and Python (the sandbox's system binds, read-only);
- the service's packages it imports, read-only, at /opt/infer/service (each
  package folder on its own: the repository's root holds the default data dir);
- its own folder, writable: /job (a job's checkpoints and output) or /dataset
  (the upload and what its parse writes);
- a job's datasets at /datasets/train, /datasets/validation and /datasets/test,
  its base model at /models/<key> and the account's version it keeps training
  from at /parent, read-only.

Never the data dir, the database, the secret key or another account's files.
The request a child reads (training/child_records.py) names these inside paths. Whatever a child leaves
behind is checked before the service uses it (`reclaim`): no links, no special
files, and owned by the service again.

With SANDBOX=none, the documented opt-out, the children run as before: the
service's own user, its environment without its secrets, no isolation.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace

from core.settings import Settings
from sandbox import Bind, Job, Limits, Sandbox

from .child_records import ParseRequest, TrainingRequest
from .records import child_environment

SERVICE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The service's packages the children import (training imports app and tasks
# for schemas, uploads.formats to load what it trained...).
CHILD_PACKAGES = ("core", "model_registry", "sandbox", "tasks", "trainers", "training", "uploads")
CODE_DIR = "/opt/infer/service"
JOB_DIR = "/job"
DATASET_DIR = "/dataset"
TRAIN_DATASET_DIR = "/datasets/train"
VALIDATION_DATASET_DIR = "/datasets/validation"
TEST_DATASET_DIR = "/datasets/test"
PARENT_DIR = "/parent"
MODELS_DIR = "/models"
# A Hugging Face cache's snapshot links each file to ../../blobs/<hash>: with the
# snapshot at /models/<key>, its blobs are at /blobs.
BLOBS_DIR = "/blobs"
# What the child reads its events pipe from: its stdout, which it moves aside
# before anything can print (training/child.py).
EVENTS_ON_STDOUT = "1"
PARSE_MODULE = "training.datasets.child"
TRAIN_MODULE = "training.child"


class UnsafeOutput(Exception):
    """A child left a link or a special file where the service reads."""


class ChildSandbox:
    def __init__(self, config: Settings, sandbox: Sandbox | None):
        self.config = config
        self.sandbox = sandbox
        self.confined = sandbox is not None and sandbox.kind != "none"
        base, count = config.training_sandbox_uid_base, config.sandbox_uid_count
        models_base = config.sandbox_uid_base
        if self.confined and base < models_base + count and models_base < base + count:
            raise ValueError(f"INFER_TRAINING_SANDBOX_UID_BASE ({base}) must leave the model versions' uids "
                             f"(INFER_SANDBOX_UID_BASE {models_base} + INFER_SANDBOX_UID_COUNT {count}) apart.")

    # --- who and with what limits -------------------------------------------------------

    def uid_for(self, account_id: int) -> int:
        """An account's own uid, the same for its parses and its jobs: its children
        cannot signal or read another account's, and its datasets are given its
        group alone (see `start_training`)."""
        return self.config.training_sandbox_uid_base + account_id % self.config.sandbox_uid_count

    def limits(self, memory_mb: int, cpu_seconds: int) -> Limits:
        config = self.config
        return Limits(
            memory_bytes=memory_mb * 2**20, processes=config.sandbox_max_processes, cpu_seconds=cpu_seconds,
            open_files=config.sandbox_max_open_files,
            # No one file can be larger than the account may store in all.
            file_bytes=config.account_max_stored_mb * 2**20,
            tmp_bytes=config.sandbox_tmp_mb * 2**20, nice=config.training_nice)

    def command(self, module: str, work_dir: str) -> list[str]:
        """The child's command line (tests put a probe here, to run as the child would)."""
        return [sys.executable, "-m", module, work_dir]

    # --- the jobs ------------------------------------------------------------------------

    def _code_binds(self) -> list[Bind]:
        binds = [Bind(os.path.join(SERVICE_ROOT, name), f"{CODE_DIR}/{name}") for name in CHILD_PACKAGES]
        if sys.prefix != sys.base_prefix:  # a venv: its python and pyvenv.cfg (site-packages are system binds)
            binds += [Bind(os.path.join(sys.prefix, "bin"), os.path.join(sys.prefix, "bin")),
                      Bind(os.path.join(sys.prefix, "pyvenv.cfg"), os.path.join(sys.prefix, "pyvenv.cfg"))]
        return binds

    def _env(self, threads: int, **extra: str) -> dict[str, str]:
        threads_text = str(max(1, threads))
        return {"PYTHONPATH": CODE_DIR, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": threads_text,
                "MKL_NUM_THREADS": threads_text, "OPENBLAS_NUM_THREADS": threads_text, **extra}

    def parse_job(self, account_id: int, folder: str) -> Job:
        config = self.config
        return Job(self.command(PARSE_MODULE, DATASET_DIR), [*self._code_binds(), Bind(folder, DATASET_DIR, True)],
                   uid=self.uid_for(account_id), workdir=CODE_DIR, env=self._env(1),
                   limits=self.limits(config.dataset_parse_memory_mb, config.dataset_parse_cpu_s))

    def training_job(self, account_id: int, folder: str, request: TrainingRequest) -> Job:
        """`request` as the runner made it, with the host's paths."""
        config = self.config
        binds = [*self._code_binds(), Bind(folder, JOB_DIR, True)]
        for source, target in ((request.dataset_dir, TRAIN_DATASET_DIR),
                               (request.validation_dataset_dir, VALIDATION_DATASET_DIR),
                               (request.test_dataset_dir, TEST_DATASET_DIR), (request.parent_dir, PARENT_DIR)):
            if source:
                binds.append(Bind(source, target))
        if request.base_model_dir:
            binds += _base_model_binds(request.base_model_dir, request.base_model)
        cache = f"{JOB_DIR}/cache"  # on disk, counted with the job's files against the account's quota
        env = self._env(request.torch_threads, INFER_TRAINING_EVENTS_FD=EVENTS_ON_STDOUT,
                        HF_HOME=f"{cache}/huggingface", HF_DATASETS_CACHE=f"{cache}/datasets",
                        XDG_CACHE_HOME=cache)
        return Job(self.command(TRAIN_MODULE, JOB_DIR), binds, uid=self.uid_for(account_id), workdir=CODE_DIR,
                   env=env, limits=self.limits(config.training_memory_mb, config.training_cpu_s))

    def child_request(self, request: TrainingRequest) -> TrainingRequest:
        """The training request as the child sees it: the sandbox's paths, and the
        niceness left to the sandbox (which starts it niced already)."""
        if not self.confined:
            return request
        return replace(
            request, nice=0, autogroup_nice=request.nice,
            dataset_dir=TRAIN_DATASET_DIR if request.dataset_dir else request.dataset_dir,
            validation_dataset_dir=(VALIDATION_DATASET_DIR if request.validation_dataset_dir
                                    else request.validation_dataset_dir),
            test_dataset_dir=TEST_DATASET_DIR if request.test_dataset_dir else request.test_dataset_dir,
            parent_dir=PARENT_DIR if request.parent_dir else request.parent_dir,
            base_model_dir=f"{MODELS_DIR}/{request.base_model}" if request.base_model_dir else request.base_model_dir,
            settings={**request.settings, "MODEL_DIR": MODELS_DIR})

    def parse_request(self, request: ParseRequest) -> ParseRequest:
        """A parse request (training/parsing.py) as the child sees it."""
        if not self.confined:
            return request
        return replace(request, source=f"{DATASET_DIR}/{os.path.basename(request.source)}", nice=0,
                       autogroup_nice=request.nice)

    # --- starting ------------------------------------------------------------------------

    def start_parse(self, account_id: int, folder: str, output) -> subprocess.Popen:
        """Start parsing the dataset in `folder` (its parse_request.json written);
        `output` takes what it prints. SandboxUnavailable when it cannot be confined."""
        if not self.confined:
            return subprocess.Popen([sys.executable, "-m", PARSE_MODULE, folder], stdout=output,
                                    stderr=subprocess.STDOUT, env=child_environment(), cwd=SERVICE_ROOT)
        self.sandbox.require()
        self.sandbox.grant(folder, self.uid_for(account_id), writable=True)
        return self.sandbox.spawn(self.parse_job(account_id, folder), stdin=subprocess.DEVNULL, stdout=output,
                                  stderr=subprocess.STDOUT)

    def start_training(self, account_id: int, folder: str, request: TrainingRequest, events_fd: int,
                       output) -> subprocess.Popen:
        """Start the job's child (its job.json written, from `child_request(request)`); it
        reports on `events_fd` (a pipe's write end) and prints to `output`."""
        if not self.confined:
            env = child_environment({"INFER_TRAINING_EVENTS_FD": str(events_fd)})
            return subprocess.Popen([sys.executable, "-m", TRAIN_MODULE, folder], stdout=output,
                                    stderr=subprocess.STDOUT, env=env, pass_fds=(events_fd,), cwd=SERVICE_ROOT,
                                    # Its own process group, to stop it with all it started; not its own
                                    # session: a new session is a new scheduler autogroup, which Linux
                                    # shares the CPU with as an equal, whatever the child's niceness.
                                    process_group=0)
        self.sandbox.require()
        uid = self.uid_for(account_id)
        self.sandbox.grant(folder, uid, writable=True)
        # The account's own files: its datasets and the version it keeps training from.
        for datasets in (request.dataset_dir, request.validation_dataset_dir, request.test_dataset_dir,
                         request.parent_dir):
            if datasets:
                self.sandbox.grant(datasets, uid)
        if request.base_model_dir and self.sandbox.privileged:
            for bind in _base_model_binds(request.base_model_dir, request.base_model):
                _readable_by_all(bind.source)
        return self.sandbox.spawn(self.training_job(account_id, folder, request), stdin=subprocess.DEVNULL,
                                  stdout=events_fd, stderr=output)

    def stop(self, process: subprocess.Popen) -> None:
        """After the child ended or was stopped: whatever it left running goes too."""
        if self.confined:
            self.sandbox.kill(process)

    def killed_for_memory(self, process: subprocess.Popen) -> bool:
        """Whether the sandbox stopped the child for its memory limit (its cgroup's OOM kill)."""
        return self.confined and self.sandbox.over_memory(process)

    # --- taking back what a child wrote -------------------------------------------------

    def reclaim(self, path: str) -> None:
        """Before the service reads or serves what a child wrote under `path`: only
        folders and regular files (UnsafeOutput otherwise), owned by the service
        again, so no later sandbox of the account can change them."""
        if os.path.islink(path) or not os.path.isdir(path):
            raise UnsafeOutput(f"{os.path.basename(path)} is not a folder")
        for directory, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                mode = os.lstat(os.path.join(directory, name)).st_mode
                if not (_is_dir(mode) or _is_file(mode)):
                    raise UnsafeOutput(f"{os.path.relpath(os.path.join(directory, name), path)} is a link or a "
                                       "special file")
        if self.confined and self.sandbox.privileged:
            for directory, dirs, files in os.walk(path):
                for name in [None, *dirs, *files]:
                    os.chown(directory if name is None else os.path.join(directory, name), os.geteuid(),
                             os.getegid(), follow_symlinks=False)


def open_no_links(path: str, mode: str):
    """Open a file of a child's folder as the service: never through a link the
    child may have put in its place (it would point the service's writes, or
    reads, at a file of the host's)."""
    flags = {"rb": os.O_RDONLY, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode]
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if not _is_file(os.fstat(fd).st_mode):
            raise UnsafeOutput(f"{os.path.basename(path)} is not a regular file")
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def write_json_no_links(path: str, data: dict) -> None:
    with open_no_links(path, "w") as out:
        json.dump(data, out)


def read_json_no_links(path: str, max_bytes: int):
    """A JSON file a child wrote, read whole up to `max_bytes` (UnsafeOutput past it)."""
    with open_no_links(path, "rb") as source:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeOutput(f"{os.path.basename(path)} is over {max_bytes} bytes")
    return json.loads(data)


def _is_dir(mode: int) -> bool:
    return (mode & 0o170000) == 0o040000


def _is_file(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000


def _base_model_binds(base_dir: str, key: str) -> list[Bind]:
    binds = [Bind(base_dir, f"{MODELS_DIR}/{key}")]
    parent = os.path.dirname(os.path.normpath(base_dir))
    if os.path.basename(parent) == "snapshots":  # a Hugging Face cache: the links' targets too
        blobs = os.path.join(os.path.dirname(parent), "blobs")
        if os.path.isdir(blobs):
            binds.append(Bind(blobs, BLOBS_DIR))
    return binds


def _readable_by_all(path: str) -> None:
    """A catalogue model's files, made readable by the sandboxes' uids: public
    weights, shared by every account's jobs (a group per account could not be:
    one file has one group). Its folder's parents stay as they are: the sandbox
    reaches it by its mount. A read-only model folder is left as it is."""
    for directory, _dirs, files in os.walk(path):
        for target, bits in [(directory, 0o005), *((os.path.join(directory, f), 0o004) for f in files)]:
            try:
                mode = os.lstat(target).st_mode
                if not os.path.islink(target) and mode & bits != bits:
                    os.chmod(target, (mode & 0o7777) | bits)
            except OSError:
                pass
