"""Where uploaded archives arrive: the service's own signed PUT URLs on local disk,
or an S3 bucket (AWS, MinIO, SeaweedFS...) through presigned PUT URLs."""

import hashlib
import hmac
import os
import secrets
import tempfile
import time

from core.errors import ApiError
from core.settings import Settings


class UploadRejected(ApiError):
    status = 403


class UploadTooLarge(Exception):
    """An archive in the bucket over INFER_UPLOAD_MAX_BYTES: its build fails."""


def load_secret(config: Settings) -> bytes:
    """The signing secret: INFER_SECRET_KEY, else one generated once and kept in the data dir."""
    if config.secret_key:
        return config.secret_key.encode()
    path = os.path.join(config.data_dir, "secret_key")
    try:
        with open(path) as secret:
            return secret.read().strip().encode()
    except FileNotFoundError:
        pass
    # gunicorn workers start at the same time and may all get here: each writes
    # a complete file under its own name and links it into place. The first link
    # wins; the others read the winner's, so no worker sees a half-written secret
    # or keeps a secret the others do not share.
    fd, temporary = tempfile.mkstemp(dir=config.data_dir, prefix=".secret_key-")
    try:
        with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
            out.write(secrets.token_hex(32))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
    with open(path) as secret:
        return secret.read().strip().encode()


class LocalStorage:
    kind = "local"

    def __init__(self, config: Settings):
        self.secret = load_secret(config)
        self.folder = os.path.join(config.data_dir, "uploads")
        os.makedirs(self.folder, exist_ok=True)

    def _signature(self, version_id: int | str, expires: int) -> str:
        return hmac.new(self.secret, f"{version_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def upload_url(self, version_id: int | str, expires: int, base_url: str, route: str = "uploads") -> str:
        """A model version's (route uploads) or a dataset's (route dataset-uploads,
        its "ds_..." id cannot sign the same string as a version's number)."""
        return f"{base_url.rstrip('/')}/{route}/{version_id}?expires={expires}&signature={self._signature(version_id, expires)}"

    def verify(self, version_id: int | str, expires: str, signature: str) -> None:
        try:
            expires_at = int(expires)
        except (TypeError, ValueError):
            raise UploadRejected("This upload URL is malformed; ask POST /upload-url for a new one.") from None
        if not hmac.compare_digest(self._signature(version_id, expires_at), signature or ""):
            raise UploadRejected("This upload URL's signature is wrong; ask POST /upload-url for a new one.")
        if time.time() > expires_at:
            raise UploadRejected("This upload URL has expired (they last an hour); ask POST /upload-url for a new one.")

    def archive_path(self, version_id: int) -> str:
        return os.path.join(self.folder, f"{version_id}.zip")

    def fetch(self, version_id: int, destination: str, max_bytes: int, key: str | None = None,
              filename: str = "upload.zip") -> str:
        return self.archive_path(version_id)  # its PUT already held it to max_bytes

    def delete(self, version_id: int) -> None:
        try:
            os.remove(self.archive_path(version_id))
        except FileNotFoundError:
            pass


class S3Storage:
    kind = "s3"

    def __init__(self, config: Settings):
        import boto3
        from botocore.config import Config

        self.bucket = config.s3_bucket
        self.prefix = config.s3_prefix
        self.client = boto3.client(
            "s3",
            endpoint_url=config.s3_endpoint_url or None,
            region_name=config.s3_region or None,
            # SigV4: what AWS requires today and what S3-compatible stores expect.
            # A store that does not answer fails a request in seconds (a 503 that
            # says so), not after botocore's default minute of connecting.
            config=Config(signature_version="s3v4", connect_timeout=10,
                          retries={"mode": "standard", "max_attempts": 3}),
        )

    def key(self, version_id: int) -> str:
        return f"{self.prefix}{version_id}.zip"

    def named(self, name: str) -> str:
        """The key of one of the service's own objects (never an upload URL's key)."""
        return f"{self.prefix}{name}"

    def dataset_key(self, dataset_id: str) -> str:
        return f"{self.prefix}datasets/{dataset_id}"

    def upload_url(self, version_id: int, expires: int, base_url: str, key: str | None = None) -> str:
        return self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key or self.key(version_id)},
            ExpiresIn=max(1, int(expires - time.time())),
        )

    def uploaded(self, version_id: int, key: str | None = None) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key or self.key(version_id))
            return True
        except ClientError:
            return False

    def fetch(self, version_id: int, destination: str, max_bytes: int, key: str | None = None,
              filename: str = "upload.zip") -> str:
        """Download the archive, unless the bucket holds more than max_bytes; its
        path, where no file is when the bucket holds none."""
        path = os.path.join(destination, filename)
        self.download(key or self.key(version_id), path, max_bytes, "The zip", " (INFER_UPLOAD_MAX_BYTES)")
        return path

    def download(self, key: str, path: str, max_bytes: int, what: str = "The object", setting: str = "") -> bool:
        """Write the object to `path`; False when the bucket has no such object.

        A presigned PUT URL cannot bound the size of what is put (only a
        presigned POST can, and Backprop's clients PUT), so the size is checked
        here, before a byte is downloaded, and again while downloading: the
        object could be replaced in between."""
        from botocore.exceptions import ClientError

        try:
            size = self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        if size > max_bytes:
            raise UploadTooLarge(f"{what} is {size} bytes; the limit is {max_bytes}{setting}.")
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        written = 0
        with open(path, "wb") as out:
            for chunk in body.iter_chunks(1 << 20):
                written += len(chunk)
                if written > max_bytes:
                    raise UploadTooLarge(f"{what} is over {max_bytes} bytes{setting}.")
                out.write(chunk)
        return True

    def put_file(self, key: str, path: str) -> None:
        # upload_file sends a large file in parts, as S3 requires past 5 GB.
        self.client.upload_file(path, self.bucket, key)

    def delete_key(self, key: str) -> None:
        """Deleting a key that is not there succeeds, as S3's DELETE does."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str) -> list[str]:
        """The keys under `prefix`, every page of the listing."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def delete(self, version_id: int, key: str | None = None) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key or self.key(version_id))


def _missing(error) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def make_storage(config: Settings):
    if config.storage == "s3":
        return S3Storage(config)
    if config.storage == "local":
        return LocalStorage(config)
    raise ValueError(f"INFER_STORAGE must be local or s3, not {config.storage!r}")
