"""A private S3 stand-in for tests: moto's standalone server in a subprocess on 127.0.0.1.

The server speaks the S3 REST protocol over HTTP, so pyiceberg's PyArrowFileIO, pyarrow's
S3FileSystem and boto3 all reach it exactly as they would reach MinIO or AWS through an
endpoint override. Keys are moto's: any non-empty pair is accepted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ACCESS_KEY_ID = "rq-test-access-key"
SECRET_ACCESS_KEY = "rq-test-secret-key"
REGION = "us-east-1"
START_TIMEOUT_S = 30.0


def moto_available() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """`with S3Server() as s3:` -> `s3.endpoint` (http://127.0.0.1:PORT); `create_bucket`."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir = log_dir
        self._log: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        for _ in range(3):  # a port taken between probing and binding: try another
            self.port = _free_port()
            if self._spawn():
                return self
        raise RuntimeError(f"moto server did not start; see {self._log}")

    def _spawn(self) -> bool:
        log_dir = self._log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        self._log = log_dir / f"moto-{self.port}.log"
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1.0)
                return True
            except httpx.TransportError:
                time.sleep(0.05)  # polling a condition, with a deadline
        self.stop()
        return False

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`."""
        paginator = self.client().get_paginator("list_objects_v2")
        found: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def client(self):  # type: ignore[no-untyped-def]  # boto3 ships no type hints
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
