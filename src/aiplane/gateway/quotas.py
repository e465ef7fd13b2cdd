"""Quotas: budgets and rate limits per user, group, model or provider (docs/quotas.md).

Before the upstream call, every counter the request is subject to is checked and the admission
charges (one request, one slot) are taken, all or nothing. After the answer, the metered tokens
and the priced cost are charged. A stream that crosses a limit finishes; the next request is
refused with 429, Retry-After, and a JSON error naming the limit and its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiplane.config import QUOTA_LIMITS, QuotaRule, Settings
from aiplane.gateway.relay import error_response
from aiplane.httpbody import BodyTooLarge, read_limited
from aiplane.logs import log_fields
from aiplane.store import quotas as rule_store
from aiplane.store.counters import (
    Admission,
    Counter,
    CountersUnavailable,
    MemoryCounters,
    RedisCounters,
    window_ids,
)

log = logging.getLogger("aiplane.quotas")

MAX_RULE_BYTES = 16 * 1024
# limit -> (counter kind, key suffix, window name for window counters, what is charged)
_COUNTERS: dict[str, tuple[str, str, str, str]] = {
    "requests_per_minute": ("rate", "rpm", "", "request"),
    "tokens_per_minute": ("rate", "tpm", "", "tokens"),
    "tokens_per_day": ("window", "tpd", "day", "tokens"),
    "usd_per_day": ("window", "usdd", "day", "usd"),
    "usd_per_month": ("window", "usdm", "month", "usd"),
    "max_concurrent": ("slots", "conc", "", "slot"),
}


# What a request that ends without a usage report is charged to quotas: its input at about four bytes
# a token, plus the output it asked for (this when it asked for no limit).
UNREPORTED_OUTPUT_TOKENS = 4096
_MAX_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def estimate_charge(target: Any, prices: Any) -> tuple[int, float | None]:
    """(tokens, usd) for a request whose usage we never saw, from its own body."""
    from aiplane.modelcatalog.pricing import TokenCounts

    body = target.body or b""
    input_tokens = len(body) // 4
    output_tokens = UNREPORTED_OUTPUT_TOKENS
    try:
        payload = json.loads(body) if body[:1] in (b"{", b"\xef") else None
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        config = payload.get("generationConfig")
        asked = [payload.get(name) for name in _MAX_OUTPUT_FIELDS]
        asked.append(config.get("maxOutputTokens") if isinstance(config, dict) else None)
        numbers = [int(v) for v in asked if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        if numbers:
            output_tokens = min(min(numbers), 1_000_000)
    cost = prices.cost(target.catalog_id, target.model, TokenCounts(input_tokens, output_tokens, 0, 0))
    return input_tokens + output_tokens, cost


def _digest(text: str) -> str:
    # Keys never carry subjects (emails) and stay short whatever the rule names.
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RuleSet:
    """Rules indexed for matching; a runtime rule replaces a settings rule with the same key."""

    def __init__(self, settings_rules: list[QuotaRule], runtime_rules: list[QuotaRule]) -> None:
        merged: dict[tuple[str, str, bool], tuple[QuotaRule, str]] = {}
        for rule in settings_rules:
            merged[rule.key] = (rule, "settings")
        for rule in runtime_rules:
            merged[rule.key] = (rule, "runtime")
        self.entries = list(merged.values())
        self.users: dict[str, QuotaRule] = {}
        self.every_user: QuotaRule | None = None
        self.others: dict[tuple[str, str], list[QuotaRule]] = {}
        for rule, _source in self.entries:
            if rule.scope == "user":
                if rule.subject == "*":
                    self.every_user = rule
                else:
                    self.users[rule.subject] = rule
            else:
                # Model and provider names compare as the gateway prices them: case-insensitively.
                subject = rule.subject.strip().lower() if rule.scope in ("model", "provider") else rule.subject
                self.others.setdefault((rule.scope, subject), []).append(rule)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def matching(self, subject: str, user_id: str, groups: tuple[str, ...], provider: str, model: str,
                 canonical: str | None = None) -> list[QuotaRule]:
        """Rules for this request. A model rule matches the name as sent, normalised (case, spaces, a
        `models/` prefix) and the catalogued model it is priced as (`canonical`), with or without the
        provider, so `GPT-4o`, `gpt-4o-2024-08-06` and `openai/gpt-4o` all meet a rule on `openai/gpt-4o`."""
        found: list[QuotaRule] = []
        user_rule = self.users.get(subject) or self.users.get(user_id) or self.every_user
        if user_rule is not None:
            found.append(user_rule)
        if self.others:
            plain = model.strip().lower().removeprefix("models/")
            names = dict.fromkeys(n for n in (model.strip().lower(), plain, canonical) if n)
            wanted = [("provider", provider.lower())]
            wanted += [("model", n) for n in names] + [("model", f"{provider.lower()}/{n}") for n in names]
            wanted += [("group", g) for g in groups]
            for key in dict.fromkeys(wanted):
                for rule in self.others.get(key, ()):
                    if rule not in found:
                        found.append(rule)
        return found


@dataclass(frozen=True, slots=True)
class Applied:
    """One limit of one rule, as it applies to one request."""

    rule: QuotaRule
    limit: str
    counter: Counter
    charges: str  # request, tokens, usd or slot


def applied_limits(rule: QuotaRule, user_id: str, windows: dict[str, tuple[str, float]]) -> list[Applied]:
    base = "u:" + user_id if rule.scope == "user" else f"{rule.scope[0]}:{_digest(rule.subject)}"
    if rule.per_user:
        base += ":u:" + user_id
    out = []
    for name, (kind, suffix, window, charges) in _COUNTERS.items():
        value = getattr(rule, name)
        if value is None:
            continue
        key, reset = f"q:{base}:{suffix}", 0.0
        if window:
            window_id, reset = windows[window]
            key += ":" + window_id
        out.append(Applied(rule, name, Counter(key, kind, float(value), reset), charges))  # type: ignore[arg-type]
    return out


def _window(limit: str) -> str:
    return QUOTA_LIMITS[limit]


def _who(rule: QuotaRule, user_id: str) -> str:
    """How logs and errors name a rule: never a user's subject (an email), the anonymous id instead."""
    if rule.scope == "user":
        return f"user {user_id}"
    return f"{rule.scope} '{rule.subject}'" + (" (per user)" if rule.per_user else "")


class Ticket:
    """One admitted request's quota state: what to charge when it ends, and its slot lease."""

    __slots__ = ("applied", "lease", "tokens", "usd", "levels", "user_id", "closed")

    def __init__(self, applied: list[Applied], lease: str, levels: tuple[float, ...], user_id: str) -> None:
        self.applied, self.lease, self.levels, self.user_id = applied, lease, levels, user_id
        self.tokens, self.usd, self.closed = 0, 0.0, False

    def charge(self, tokens: int, usd: float | None) -> None:
        self.tokens, self.usd = max(0, tokens), (usd or 0.0)

    def remaining_headers(self) -> dict[str, str]:
        """The tightest remaining allowance per unit, as admitted (before this request's tokens)."""
        remaining: dict[str, float] = {}
        names = {"request": "x-aiplane-quota-remaining-requests", "tokens": "x-aiplane-quota-remaining-tokens",
                 "usd": "x-aiplane-budget-remaining-usd"}
        for item, level in zip(self.applied, self.levels, strict=True):
            header = names.get(item.charges)
            if header is not None:
                left = max(0.0, item.counter.limit - level)
                remaining[header] = min(remaining.get(header, left), left)
        return {h: (f"{v:.6f}" if h.endswith("usd") else str(int(v))) for h, v in remaining.items()}


class QuotaService:
    def __init__(self, settings: Settings, engine: AsyncEngine, metrics: Any) -> None:
        self._settings = settings.quotas
        self._engine = engine
        self._metrics = metrics
        redis = settings.redis
        self.store: MemoryCounters | RedisCounters = (
            RedisCounters(redis.url.get_secret_value(), redis.key_prefix, redis.timeout_seconds, redis.retry_seconds)
            if redis.url is not None else MemoryCounters(engine)
        )
        self.rules = RuleSet(self._settings.rules, [])
        self.headers = self._settings.remaining_headers
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self._last_error_log = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.load()
        await self.reload()
        self._loop_task = asyncio.create_task(self._every_interval(), name="quota-reload")

    async def reload(self) -> None:
        try:
            runtime = await rule_store.load_rules(self._engine)
        except Exception as exc:  # noqa: BLE001 - keep the rules we have; the next reload retries
            log.warning("quota rules not reloaded", extra=log_fields(error_type=exc.__class__.__name__))
            return
        self.rules = RuleSet(self._settings.rules, runtime)

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_seconds)
            await self.reload()
            await self.store.save()

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()

    # -- enforcement -------------------------------------------------------------------------

    async def admit(self, subject: str, user_id: str, groups: tuple[str, ...], provider: str, model: str,
                    request_id: str, canonical: str | None = None) -> Ticket | Response | None:
        """None when no quota applies (or the store failed open); a Ticket when admitted; else the refusal."""
        if not self.rules:
            return None
        rules = self.rules.matching(subject, user_id, groups, provider, model, canonical)
        if not rules:
            return None
        windows = window_ids()
        applied = [item for rule in rules for item in applied_limits(rule, user_id, windows)]
        counters = [a.counter for a in applied]
        costs = [1.0 if a.charges in ("request", "slot") else 0.0 for a in applied]
        lease = uuid.uuid4().hex
        try:
            admission = await self.store.admit(counters, costs, lease, self._settings.lease_seconds)
        except CountersUnavailable as exc:
            return self._unavailable(exc, request_id)
        if not admission.admitted:
            return self._refuse(applied[admission.refused_index], admission, user_id, request_id)
        self._warn_crossings(applied, admission.levels, costs, user_id)
        return Ticket(applied, lease, admission.levels, user_id)

    def finish(self, ticket: Ticket) -> None:
        """The request ended: charge its tokens and cost, give back its slot (off the request path)."""
        if ticket.closed:
            return
        ticket.closed = True
        pairs = [(a, self._amount(a, ticket)) for a in ticket.applied]
        pairs = [(a, amount) for a, amount in pairs if amount > 0 or a.charges == "slot"]
        if not pairs:
            return
        task = asyncio.get_running_loop().create_task(self._settle(ticket, pairs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _amount(applied: Applied, ticket: Ticket) -> float:
        if applied.charges == "tokens":
            return float(ticket.tokens)
        if applied.charges == "usd":
            return ticket.usd if math.isfinite(ticket.usd) else 0.0
        return 0.0

    async def _settle(self, ticket: Ticket, pairs: list[tuple[Applied, float]]) -> None:
        try:
            levels = await self.store.settle([a.counter for a, _ in pairs], [amount for _, amount in pairs], ticket.lease)
        except CountersUnavailable as exc:
            self._metrics.quota_backend_errors.inc()
            self._log_backend_error(exc, "usage not charged to quotas")
            return
        self._warn_crossings([a for a, _ in pairs], levels, [amount for _, amount in pairs], ticket.user_id)

    def _warn_crossings(self, applied: list[Applied], levels: tuple[float, ...], added: list[float], user_id: str) -> None:
        ratio = self._settings.warn_ratio
        for item, level, amount in zip(applied, levels, added, strict=True):
            if item.charges == "slot" or amount <= 0 or item.counter.limit <= 0:
                continue
            threshold = ratio * item.counter.limit
            if level - amount < threshold <= level:
                log.warning("quota nearly used", extra=log_fields(
                    quota=_who(item.rule, user_id), limit=item.limit, window=_window(item.limit),
                    used=round(level, 6), allowed=item.counter.limit, ratio=ratio))

    def _refuse(self, item: Applied, admission: Admission, user_id: str, request_id: str) -> Response:
        retry = max(1, math.ceil(admission.retry_after))
        self._metrics.quota_refusals.labels(item.rule.scope, item.limit).inc()
        window = _window(item.limit)
        limit_value = item.counter.limit
        shown = f"{limit_value:g}" if item.charges == "usd" else str(int(limit_value))
        message = (f"quota exceeded: {item.limit} = {shown} for {_who(item.rule, user_id)} "
                   f"(window: {window}); retry after {retry} s")
        log.info("request refused by quota", extra=log_fields(request_id=request_id, user=user_id, scope=item.rule.scope,
                                                               limit=item.limit, window=window))
        body = {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": message, "code": "quota_exceeded",
                      "limit": item.limit, "window": window, "scope": item.rule.scope, "allowed": limit_value,
                      "retry_after_seconds": retry},
            "request_id": request_id,
        }
        headers = {"retry-after": str(retry), "x-request-id": request_id}
        if self.headers:
            headers.update({"x-aiplane-quota-limit": item.limit, "x-aiplane-quota-window": window})
        return Response(json.dumps(body), status_code=429, media_type="application/json", headers=headers)

    def _unavailable(self, exc: Exception, request_id: str) -> Response | None:
        self._metrics.quota_backend_errors.inc()
        if self._settings.on_backend_error == "open":
            self._log_backend_error(exc, "quota counters unavailable; admitting without quotas (quotas.on_backend_error = open)")
            return None
        self._log_backend_error(exc, "quota counters unavailable; refusing (quotas.on_backend_error = closed)")
        return error_response(503, "quota_unavailable", "quota counters are unavailable; retry shortly", request_id,
                              {"retry-after": "1"})

    def _log_backend_error(self, exc: Exception, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 10:  # one line per 10 s, not one per request
            self._last_error_log = now
            log.error(message, extra=log_fields(error_type=str(exc)))

    # -- reports -----------------------------------------------------------------------------

    async def report(self, user_id: str | None, find_user) -> list[dict[str, Any]]:  # noqa: ANN001 - async subject -> id
        return await consumption(self.store, self.rules, user_id, find_user)


async def consumption(store, rules: RuleSet, user_id: str | None, find_user) -> list[dict[str, Any]]:  # noqa: ANN001
    """Every rule with its limits and, where the counter is known, what is used of each."""
    windows = window_ids()
    rows: list[dict[str, Any]] = []
    wanted: list[tuple[int, Applied]] = []
    for rule, source in rules.entries:
        row: dict[str, Any] = {**rule.model_dump(), "source": source, "usage": None}
        if rule.scope == "user":
            # A named user's counters are theirs; "*" is everyone's own, shown for the user asked about.
            who = user_id if rule.subject == "*" else await find_user(rule.subject)
        else:
            who = user_id if rule.per_user else "-"
        if who is not None:
            row["usage"] = {}
            wanted += [(len(rows), a) for a in applied_limits(rule, who, windows)]
        rows.append(row)
    if wanted:
        levels = await store.read([a.counter for _, a in wanted])
        for (index, item), level in zip(wanted, levels, strict=True):
            rows[index]["usage"][item.limit] = {
                "used": round(level, 6), "limit": item.counter.limit, "window": _window(item.limit),
                "ratio": round(level / item.counter.limit, 4) if item.counter.limit else None,
            }
    return rows


def admin_routes(service: QuotaService, admin, find_user, actor_id) -> list[Route]:  # noqa: ANN001
    """GET (rules and consumption), PUT (set a rule) and DELETE /v1/admin/quotas, for admins."""

    async def endpoint(request: Request) -> Response:
        request_id = uuid.uuid4().hex
        if isinstance(who := await admin(request, request_id, "quota administration"), Response):
            return who
        if request.method == "GET":
            user = request.query_params.get("user")
            if user is not None and not 0 < len(user) <= 320:
                return error_response(400, "invalid_request", "user must be 1 to 320 characters", request_id)
            user_id = await find_user(user) if user else None
            if user and user_id is None:
                return error_response(404, "not_found", "no such user has used the gateway", request_id)
            try:
                rows = await service.report(user_id, find_user)
            except CountersUnavailable:
                return error_response(503, "quota_unavailable", "quota counters are unavailable", request_id)
            return JSONResponse({"rules": rows, "shared_counters": service.store.shared})
        if request.method == "PUT":
            try:
                body = await read_limited(request, MAX_RULE_BYTES)
                rule = QuotaRule.model_validate_json(body)
            except BodyTooLarge:
                return error_response(413, "request_too_large", f"a rule is at most {MAX_RULE_BYTES} bytes", request_id)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}"
                                     for e in exc.errors(include_url=False, include_input=False))
                return error_response(422, "invalid_request", f"invalid quota rule: {problems}", request_id)
            await rule_store.save_rule(service._engine, rule, await actor_id(who.subject))
            await service.reload()
            log.info("quota rule set", extra=log_fields(request_id=request_id, scope=rule.scope, per_user=rule.per_user))
            return JSONResponse({"status": "saved", "rule": rule.model_dump(), "request_id": request_id})
        scope = request.query_params.get("scope", "")
        subject = request.query_params.get("subject", "")
        per_user = request.query_params.get("per_user", "false").lower() in ("1", "true", "yes")
        if scope not in ("user", "group", "model", "provider") or not subject:
            return error_response(400, "invalid_request", "give scope (user, group, model, provider) and subject", request_id)
        deleted = await rule_store.delete_rule(service._engine, scope, subject.strip(), per_user)
        await service.reload()
        if not deleted:
            in_settings = any(r.key == (scope, subject.strip(), per_user) for r in service._settings.rules)
            message = ("that rule comes from settings (quotas.rules); change it there" if in_settings
                       else "no runtime rule with that scope and subject")
            return error_response(404, "not_found", message, request_id)
        return JSONResponse({"status": "deleted", "request_id": request_id})

    return [Route("/v1/admin/quotas", endpoint, methods=["GET", "PUT", "DELETE"])]
