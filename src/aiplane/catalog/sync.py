"""Pulling entities from an existing Backstage through its catalog REST API.

The upstream is hostile like any outside input: every page is bounded in bytes and time, the
whole pull in entities and time, redirects are refused (they would carry the token elsewhere),
each entity is checked against Backstage's rules, and only a complete pull replaces the last
good copy, in one transaction. Anything less leaves the stored copy as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from aiplane.catalog.index import CatalogIndex
from aiplane.catalog.model import EntityError, entity_ref, validate
from aiplane.catalog.store import LiveIndex, count_source, owners, replace_source, upsert
from aiplane.config import BackstageSettings, CatalogLoaderSettings
from aiplane.logs import log_fields

log = logging.getLogger("aiplane.catalog.sync")

SOURCE_PREFIX = "backstage:"
# Fields a served entity may carry at its root; relations are derived here, status is Backstage's own.
_ROOT_FIELDS = ("apiVersion", "kind", "metadata", "spec")


class SyncError(Exception):
    """The pull failed; the message is safe to show (no token, no upstream body)."""


@dataclass
class SyncResult:
    base: str
    fetched: int = 0
    pages: int = 0
    written: int = 0
    deleted: int = 0
    rejected: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def catalog_base(url: str) -> str:
    """The catalog API root: a Backstage backend URL gets /api/catalog appended."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SyncError("the Backstage URL must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise SyncError("the Backstage URL must not carry credentials; set backstage.token")
    base = url.strip().rstrip("/")
    return base if base.endswith("/api/catalog") else base + "/api/catalog"


def source_of(base: str) -> str:
    return SOURCE_PREFIX + base


def _safe_name(value: Any) -> str:
    # The upstream's error name only, and only if it looks like one: its messages stay out of our logs.
    return value if isinstance(value, str) and value.isidentifier() and len(value) <= 60 else ""


class _Puller:
    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None, settings: BackstageSettings) -> None:
        self.session = session
        self.base = base
        self.settings = settings
        self.headers = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "aiplane-catalog-sync"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    async def get(self, path: str, params: list[tuple[str, str]]) -> tuple[int, Any]:
        url = f"{self.base}{path}?{urlencode(params)}"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        try:
            async with self.session.get(url, headers=self.headers, timeout=timeout, allow_redirects=False) as response:
                if response.headers.get("content-encoding", "identity").lower() not in ("identity", ""):
                    raise SyncError(f"{path} answered with a content-encoding although identity was asked for")
                status = response.status
                chunks, size = [], 0
                while size <= self.settings.max_page_bytes:  # read() returns a chunk, not the whole body
                    chunk = await response.content.read(64 * 1024)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                raw = b"".join(chunks)
        except TimeoutError:
            raise SyncError(f"{path} timed out after {self.settings.timeout_seconds:g}s") from None
        except aiohttp.ClientError as exc:
            raise SyncError(f"{path} failed ({exc.__class__.__name__})") from None
        if len(raw) > self.settings.max_page_bytes:
            raise SyncError(f"{path} answered more than {self.settings.max_page_bytes} bytes in one page (backstage.max_page_bytes)")
        if 300 <= status < 400:
            raise SyncError(f"{path} redirected (HTTP {status}); configure the final URL in backstage.url")
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            body = None
            if status == 200:
                raise SyncError(f"{path} did not answer JSON") from None
        if status != 200 and status != 404:
            name = _safe_name(body.get("error", {}).get("name")) if isinstance(body, dict) and isinstance(body.get("error"), dict) else ""
            hint = "; check backstage.token" if status in (401, 403) else ""
            raise SyncError(f"{path} answered HTTP {status}{f' ({name})' if name else ''}{hint}")
        return status, body

    async def pages(self):  # noqa: ANN201 - an async generator of item lists
        """By cursor (GET /entities/by-query); Backstages without it get GET /entities with offsets."""
        limit = str(self.settings.page_size)
        status, body = await self.get("/entities/by-query", [("limit", limit)])
        if status == 404:
            async for page in self._offset_pages(limit):
                yield page
            return
        seen: set[str] = set()
        while True:
            if not isinstance(body, dict) or not isinstance(body.get("items"), list) or not isinstance(body.get("pageInfo", {}), dict):
                raise SyncError("/entities/by-query answered something other than {items, pageInfo}")
            yield body["items"]
            cursor = (body.get("pageInfo") or {}).get("nextCursor")
            if cursor is None:
                return
            if not isinstance(cursor, str) or not cursor or len(cursor) > 64 * 1024 or cursor in seen:
                raise SyncError("/entities/by-query gave a malformed or repeated nextCursor")
            seen.add(cursor)
            status, body = await self.get("/entities/by-query", [("cursor", cursor), ("limit", limit)])
            if status == 404:
                raise SyncError("/entities/by-query answered HTTP 404 in the middle of paging")

    async def _offset_pages(self, limit: str):  # noqa: ANN202
        offset = 0
        while True:
            status, body = await self.get("/entities", [("limit", limit), ("offset", str(offset))])
            if status == 404:
                raise SyncError("the catalog API was not found: is backstage.url the Backstage backend?")
            if not isinstance(body, list):
                raise SyncError("/entities answered something other than a list")
            yield body
            if len(body) < int(limit) or not body:
                return
            offset += len(body)


async def pull(session: aiohttp.ClientSession, base: str, token: str | None, settings: BackstageSettings,
               result: SyncResult) -> list[dict[str, Any]]:
    """Every entity of the upstream catalog, checked; raises SyncError unless the pull is complete."""
    puller = _Puller(session, base, token, settings)
    entities: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + settings.max_sync_seconds

    async def collect() -> None:
        async for items in puller.pages():
            result.pages += 1
            for item in items:
                result.fetched += 1
                if result.fetched > settings.max_entities:
                    raise SyncError(f"the upstream holds more than {settings.max_entities} entities (backstage.max_entities)")
                entity = _checked(item, result)
                if entity is not None:
                    entities.setdefault(entity_ref(entity).key, entity)

    try:
        await asyncio.wait_for(collect(), timeout=max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        raise SyncError(f"the sync took longer than {settings.max_sync_seconds:g}s (backstage.max_sync_seconds)") from None
    return list(entities.values())


def _checked(item: Any, result: SyncResult) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        result.rejected.append(f"item {result.fetched}: not an object")
        return None
    entity = {k: item[k] for k in _ROOT_FIELDS if k in item}
    try:
        entity = validate(json.loads(json.dumps(entity)))  # a private copy, checked like a file
        if isinstance(entity.get("metadata"), dict):
            entity["metadata"].pop("etag", None)  # ours is computed from what we serve
    except (EntityError, ValueError, RecursionError, TypeError) as exc:
        where = ""
        metadata = item.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
            where = f" ({str(item.get('kind'))[:40]}:{metadata['name'][:80]})"
        result.rejected.append(f"item {result.fetched}{where}: {getattr(exc, 'message', exc.__class__.__name__)}")
        return None
    return entity


async def sync(engine, url: str, token: str | None, settings: BackstageSettings, allow_shrink: bool = False) -> SyncResult:  # noqa: ANN001
    """Pull the whole upstream catalog and make it the stored copy for that upstream, or change nothing."""
    base = catalog_base(url)
    result = SyncResult(base)
    async with aiohttp.ClientSession(trust_env=False, auto_decompress=False) as session:
        entities = await pull(session, base, token, settings, result)
    source = source_of(base)
    previous = await count_source(engine, source)
    floor = int(previous * settings.min_keep_ratio)
    if not allow_shrink and len(entities) < floor:
        raise SyncError(f"the upstream catalog shrank from {previous} to {len(entities)} entities; keeping the last good copy "
                        "(backstage.min_keep_ratio, or --allow-shrink)")
    result.written, result.deleted, result.conflicts = await replace_source(engine, source, entities)
    return result


class SyncScheduler:
    """The gateway's periodic pull; a failed run logs and keeps the last good copy."""

    def __init__(self, engine, settings: BackstageSettings, live: LiveIndex,  # noqa: ANN001
                 loader_settings: CatalogLoaderSettings | None = None, claim=None) -> None:  # noqa: ANN001
        # claim: async (job name, interval) -> bool, so one process of many pulls each interval
        # (store/jobs.py); the others see the result through their LiveIndex. None: always this one.
        self._claim = claim
        self._engine = engine
        self._settings = settings
        self._live = live
        self._loader_settings = loader_settings
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._settings.url)

    async def start(self) -> None:
        if self.enabled and self._settings.sync_interval_seconds > 0:
            self._task = asyncio.create_task(self._loop(), name="backstage-sync")

    async def _loop(self) -> None:
        while True:
            if await self._my_turn():
                await self.run_once()
            await asyncio.sleep(self._settings.sync_interval_seconds)

    async def _my_turn(self) -> bool:
        if self._claim is None:
            return True
        try:
            return await self._claim("backstage-sync", self._settings.sync_interval_seconds)
        except Exception as exc:  # noqa: BLE001 - without the database to agree on, pull here
            log.warning("backstage sync claim failed; syncing here", extra=log_fields(error_type=exc.__class__.__name__))
            return True

    async def run_once(self) -> bool:
        """One pull; never raises."""
        if not self.enabled:
            return False
        async with self._lock:
            token = self._settings.token.get_secret_value() if self._settings.token else None
            try:
                result = await sync(self._engine, self._settings.url, token, self._settings)
            except SyncError as exc:
                log.warning("backstage sync failed; keeping the last good copy", extra=log_fields(reason=str(exc)))
                return False
            except Exception as exc:  # noqa: BLE001 - a sync must never take the gateway down
                log.error("backstage sync failed; keeping the last good copy", extra=log_fields(error_type=exc.__class__.__name__))
                return False
        self._live.invalidate()
        log.info("backstage sync done", extra=log_fields(
            entities=result.fetched - len(result.rejected), written=result.written, deleted=result.deleted,
            rejected=len(result.rejected), conflicts=len(result.conflicts)))
        return True

    async def refresh(self, index: CatalogIndex, key: str) -> None:
        """Admin POST /refresh: re-read the entity's source (a file, a URL, or the upstream Backstage)."""
        source = index.sources.get(key, "")
        if source.startswith(SOURCE_PREFIX):
            if self.enabled and source == source_of(catalog_base(self._settings.url)):
                await self.run_once()
            return
        if not source:
            return
        is_url = source.startswith(("http://", "https://"))
        if not is_url and not Path(source).is_file():
            log.warning("catalog refresh: the source file is gone", extra=log_fields(entity=key))
            return
        from aiplane.catalog.loader import load_all

        # The loader applies its confinement, remote allowlist, size limits and ownership rules, as
        # for `aiplane catalog ingest` of that one file or URL.
        stored_owners = await owners(self._engine)
        result = await asyncio.to_thread(load_all, [source], is_url, self._loader_settings, stored_owners)
        entities = list(result.entities.values())
        if entities:
            await upsert(self._engine, entities)
        log.info("catalog entity refreshed", extra=log_fields(entity=key, documents=len(entities), problems=len(result.errors)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
