"""Where versions' weights are kept: the local adapter folder (the default), or S3-compatible
object storage (``SEAL_ARTIFACT_URL=s3://bucket/prefix``), so that the API and workers on
many machines share no file system.

With object storage a worker still saves a new version into its own adapter folder, then
:meth:`ArtifactStore.publish` uploads each file (its SHA-256 in the object's metadata) and,
last, a manifest naming them: a version's objects are whole before its row records their URI,
and a prefix without a manifest is never read. The local folder becomes this machine's cached
copy. Every process reads weights through :meth:`ArtifactStore.local`, a folder in its cache
keyed by the weights' checksum (``DATA_DIR/artifact-cache/<checksum>``), downloaded once and
checked file by file against the manifest (the weights' own checksum is checked again when
they are loaded). Deleting a version's weights deletes its objects once the transaction has
committed; each process's sweeper drops cached copies no version records any more.

Plain Python and boto3 (imported on first use); no torch."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.settings import Settings
from service.store.hooks import after_commit

log = logging.getLogger(__name__)

SCHEME = "s3://"
#: The object written last, naming each file of the version with its size and SHA-256.
MANIFEST = "seal-manifest.json"


def is_remote(uri: str | None) -> bool:
    """Whether ``uri`` names objects (``s3://``) rather than a local folder."""
    return bool(uri) and str(uri).startswith(SCHEME)


class ArtifactError(RuntimeError):
    """A version's objects are missing, incomplete or do not match their manifest."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """The settings' artifact store; ``remote`` when it is object storage."""

    def __init__(self, settings: Settings):
        self.root = settings.resolved_adapter_dir
        self.cache = (settings.data_dir / "artifact-cache").resolve()
        self.url = settings.artifact_url
        self.remote = self.url is not None
        bucket, _, prefix = (self.url or SCHEME).removeprefix(SCHEME).partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._client_options: dict[str, Any] = {
            "endpoint_url": settings.s3_endpoint_url,
            "region_name": settings.s3_region,
            "aws_access_key_id": settings.s3_access_key_id,
            "aws_secret_access_key": (
                settings.s3_secret_access_key.get_secret_value()
                if settings.s3_secret_access_key
                else None
            ),
        }
        self._client: Any = None
        self._lock = threading.Lock()
        self._bucket_checked = False

    # --- the client ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3  # only where object storage is configured
                from botocore.config import Config

                self._client = boto3.client(
                    "s3",
                    config=Config(retries={"max_attempts": 5, "mode": "standard"}),
                    **self._client_options,
                )
            return self._client

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (``seal prepare``)."""
        if not self.remote:
            return
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
        self._bucket_checked = True

    # --- keys ---------------------------------------------------------------------------------
    def key_of(self, relative: str) -> str:
        """The object key of a path relative to the adapter folder."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _key(self, uri: str) -> str:
        bucket, _, key = uri.removeprefix(SCHEME).partition("/")
        if bucket != self.bucket:
            raise ArtifactError(f"{uri} is not in SEAL_ARTIFACT_URL's bucket {self.bucket!r}")
        return key.strip("/")

    def _objects(self, key: str) -> list[str]:
        """The keys under ``key/``."""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{key}/"
        ):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    # --- writing ------------------------------------------------------------------------------
    def publish(self, folder: Path, checksum: str, *, move: bool = True) -> str:
        """The URI to record for the weights just saved in ``folder`` (inside the adapter
        folder): the folder itself, or, with object storage, its objects, uploaded whole
        (the manifest last); the folder then becomes this machine's cached copy (``move``;
        else it stays as it is)."""
        if not self.remote:
            return str(folder)
        if not self._bucket_checked:  # a worker started without `seal prepare`
            self.ensure_bucket()
        relative = folder.resolve().relative_to(self.root).as_posix()
        key = self.key_of(relative)
        files = sorted(p for p in folder.iterdir() if p.is_file())
        listed = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
        manifest = {"checksum": checksum, "files": listed}
        for path in files:
            self.client.upload_file(
                str(path),
                self.bucket,
                f"{key}/{path.name}",
                ExtraArgs={"Metadata": {"sha256": listed[path.name]["sha256"]}},
            )
        self.client.put_object(
            Bucket=self.bucket,
            Key=f"{key}/{MANIFEST}",
            Body=json.dumps(manifest, indent=1).encode(),
            ContentType="application/json",
        )
        if move:
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
            self._keep(folder, checksum)
        return f"{SCHEME}{self.bucket}/{key}"

    @contextmanager
    def publishing(self, folder: Path, checksum: str) -> Iterator[str]:
        """:meth:`publish` the weights saved in ``folder``, for the block to record their
        URI; if the block fails, the weights are removed (a version's weights exist only if
        recorded)."""
        uri = None
        try:
            uri = self.publish(folder, checksum)
            yield uri
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            if uri is not None and is_remote(uri):
                self.discard(uri, checksum)
            raise

    def _keep(self, folder: Path, checksum: str) -> None:
        """Move ``folder`` into the cache under ``checksum`` (dropped if a copy is there)."""
        target = self.cache / checksum
        if target.exists():
            shutil.rmtree(folder, ignore_errors=True)
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder, target)
        except OSError:  # another file system, or a copy that landed meanwhile
            if not target.exists():
                staging = self.cache / f".{checksum}-{uuid.uuid4().hex[:8]}"
                shutil.copytree(folder, staging)
                os.replace(staging, target)
            shutil.rmtree(folder, ignore_errors=True)

    # --- reading ------------------------------------------------------------------------------
    def local(self, uri: str, checksum: str | None) -> Path:
        """A local folder holding the weights ``uri`` names: the folder itself, or the
        cache's copy (downloaded first where this machine has none)."""
        if not is_remote(uri):
            return Path(uri)
        if not checksum:
            raise ArtifactError(f"{uri} has no checksum to cache it by")
        target = self.cache / checksum
        if (target / MANIFEST).is_file():
            return target
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(uri)
        self.cache.mkdir(parents=True, exist_ok=True)
        staging = self.cache / f".{checksum}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            try:
                self._download(key, checksum, staging)
            except (BotoCoreError, ClientError) as exc:
                raise ArtifactError(f"{uri} could not be read: {exc}") from exc
            try:
                os.replace(staging, target)
            except OSError:  # another process cached it meanwhile
                if not (target / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _download(self, key: str, checksum: str, staging: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=f"{key}/{MANIFEST}")["Body"]
            manifest = json.loads(body.read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            raise ArtifactError(f"s3://{self.bucket}/{key} has no complete version") from exc
        if manifest.get("checksum") != checksum:
            raise ArtifactError(f"s3://{self.bucket}/{key} holds other weights")
        for name, meta in manifest["files"].items():
            path = staging / name
            self.client.download_file(self.bucket, f"{key}/{name}", str(path))
            if path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
                raise ArtifactError(f"s3://{self.bucket}/{key}/{name} does not match its manifest")
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))

    # --- deleting -----------------------------------------------------------------------------
    def delete(self, uri: str, checksum: str | None = None) -> int:
        """Delete the objects of ``uri`` (its manifest first: what is left is never read) and
        this machine's cached copy of ``checksum``; how many objects."""
        deleted = self._delete_keys(self._objects(self._key(uri)))
        if checksum:
            shutil.rmtree(self.cache / checksum, ignore_errors=True)
        return deleted

    def delete_prefix(self, relative: str) -> int:
        """Delete every object under a path relative to the adapter folder (a tenant's
        folder, a skill's); how many."""
        return self._delete_keys(self._objects(self.key_of(relative)))

    def _delete_keys(self, keys: list[str]) -> int:
        keys = sorted(keys, key=lambda k: not k.endswith(f"/{MANIFEST}"))
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
            )
        return len(keys)

    def unrecorded(self, relative: str, tag: str, recorded: set[str | None]) -> list[str]:
        """The URIs of versions under ``relative`` whose folder name ends with ``-tag`` (a
        job's: :func:`worker.jobs.lifecycle.artifact_folder`) that no row records: uploaded by
        an attempt that died before recording them."""
        found = {k.rsplit("/", 1)[0] for k in self._objects(self.key_of(relative))}
        uris = {f"{SCHEME}{self.bucket}/{k}" for k in found if k.endswith(f"-{tag}")}
        return sorted(uris - recorded)

    def prune_cache(self, recorded: set[str | None], *, now: float, min_age_s: float) -> list[str]:
        """Remove cached copies whose checksum no version records any more (their weights
        were deleted, maybe by another machine), and staging folders a stopped download
        left, those older than ``min_age_s`` (a version is cached just before it is
        recorded); the names removed."""
        if not self.cache.is_dir():
            return []
        removed = []
        for path in self.cache.iterdir():
            if not path.is_dir() or now - path.stat().st_mtime < min_age_s:
                continue
            if path.name.startswith(".") or path.name not in recorded:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    def discard(self, uri: str, checksum: str | None = None) -> None:
        """Remove weights no row records (any more) wherever they are: a local folder, or
        objects and this machine's cached copy. Errors are logged, never raised (what is
        left is found again by the sweeper)."""
        try:
            if is_remote(uri):
                self.delete(uri, checksum)
            else:
                shutil.rmtree(uri, ignore_errors=True)
        except Exception:
            log.exception("could not remove %s", uri)

    def delete_prefixes_after_commit(self, session: Session, relative: list[str]) -> list[str]:
        """Delete every object under each path relative to the adapter folder once the
        session has committed (a tenant's, a skill's); their URIs."""

        def delete() -> None:
            for path in relative:
                self.delete_prefix(path)

        after_commit(session, delete)
        return [f"{SCHEME}{self.bucket}/{self.key_of(p)}" for p in relative]

    def delete_after_commit(self, session: Session, uris: Iterable[str]) -> list[str]:
        """Delete the objects of each remote URI once the session has committed; the URIs."""
        remote = [u for u in uris if is_remote(u)]
        if remote:

            def delete() -> None:
                for uri in remote:
                    self.delete(uri)

            after_commit(session, delete)
        return remote


_STORES: dict[tuple[Any, ...], ArtifactStore] = {}
_STORES_LOCK = threading.Lock()


def artifacts(settings: Settings) -> ArtifactStore:
    """The store the settings name (one per configuration: its client is reused)."""
    key = (
        settings.artifact_url,
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        settings.resolved_adapter_dir,
        settings.data_dir.resolve(),
    )
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = ArtifactStore(settings)
        return _STORES[key]
