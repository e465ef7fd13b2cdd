"""`aiplane quota`: set, list and delete quota rules at runtime, and report consumption against them."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from aiplane.cli.common import EXIT_CONFIG, ConfigOption, _fail, _run_with_db, _settings, out

quota_app = typer.Typer(help="Quotas: budgets and rate limits per user, group, model or provider.", no_args_is_help=True)

ScopeOption = Annotated[str, typer.Option(help="user, group, model or provider.")]
SubjectOption = Annotated[str, typer.Option(help="Email/subject or anonymous id ('*': every user), group, model or provider name.")]
PerUserOption = Annotated[bool, typer.Option("--per-user", help="Group/model/provider rules: each user gets their own counters.")]


@quota_app.command("set")
def quota_set(
    scope: ScopeOption,
    subject: SubjectOption,
    per_user: PerUserOption = False,
    rpm: Annotated[Optional[int], typer.Option("--rpm", help="Requests per minute.")] = None,
    tpm: Annotated[Optional[int], typer.Option("--tpm", help="Input+output tokens per minute.")] = None,
    tpd: Annotated[Optional[int], typer.Option("--tpd", help="Input+output tokens per UTC day.")] = None,
    usd_day: Annotated[Optional[float], typer.Option("--usd-day", help="Spend in USD per UTC day.")] = None,
    usd_month: Annotated[Optional[float], typer.Option("--usd-month", help="Spend in USD per UTC month.")] = None,
    concurrent: Annotated[Optional[int], typer.Option("--concurrent", help="Requests in flight at once.")] = None,
    config: ConfigOption = None,
) -> None:
    """Create or replace the runtime rule for SCOPE and SUBJECT; gateways apply it within quotas.reload_seconds."""
    from pydantic import ValidationError

    from aiplane.config import QuotaRule
    from aiplane.store.quotas import save_rule

    try:
        rule = QuotaRule(scope=scope, subject=subject, per_user=per_user, requests_per_minute=rpm, tokens_per_minute=tpm,
                         tokens_per_day=tpd, usd_per_day=usd_day, usd_per_month=usd_month, max_concurrent=concurrent)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise _fail(f"invalid quota rule: {problems}", EXIT_CONFIG) from None
    settings = _settings(config)

    async def work(engine):  # noqa: ANN001, ANN202
        await save_rule(engine, rule, "cli")

    _run_with_db(settings, work)
    out.print(f"quota set for {rule.scope} {rule.subject}{' (per user)' if rule.per_user else ''}", markup=False)


@quota_app.command("delete")
def quota_delete(scope: ScopeOption, subject: SubjectOption, per_user: PerUserOption = False,
                 config: ConfigOption = None) -> None:
    """Delete a runtime rule (rules in settings stay until the settings change)."""
    from aiplane.store.quotas import delete_rule

    settings = _settings(config)

    async def work(engine):  # noqa: ANN001, ANN202
        return await delete_rule(engine, scope, subject.strip(), per_user)

    if not _run_with_db(settings, work):
        raise _fail("no runtime rule with that scope and subject (rules in quotas.rules are changed in settings)")
    out.print("quota deleted")


def _rules(settings):  # noqa: ANN001, ANN202
    from aiplane.gateway.quotas import RuleSet
    from aiplane.store.quotas import load_rules

    async def work(engine):  # noqa: ANN001, ANN202
        return RuleSet(settings.quotas.rules, await load_rules(engine))

    return work


@quota_app.command("list")
def quota_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOption = None,
) -> None:
    """Every rule in force: from settings and set at runtime (a runtime rule replaces a settings rule with the same key)."""
    settings = _settings(config)
    rules = _run_with_db(settings, _rules(settings))
    rows = [{**rule.model_dump(), "source": source} for rule, source in rules.entries]
    if as_json:
        typer.echo(json.dumps({"rules": rows}, indent=2))
        return
    _print(rows, with_usage=False)


@quota_app.command("report")
def quota_report(
    user: Annotated[Optional[str], typer.Option(help="Also show this user's own counters (email/subject or anonymous id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOption = None,
) -> None:
    """Consumption against each limit. With redis.url the counters are live; without it, only day and month
    counters are visible here (as last saved by the gateway); GET /v1/admin/quotas shows the live ones."""
    from aiplane.gateway.quotas import consumption
    from aiplane.store.counters import CountersUnavailable, MemoryCounters, RedisCounters
    from aiplane.store.identities import IdentityMap

    settings = _settings(config)
    rules_of = _rules(settings)

    async def work(engine):  # noqa: ANN001, ANN202
        rules = await rules_of(engine)
        identities = IdentityMap(engine)
        user_id = await identities.find(user) if user else None
        if user and user_id is None:
            raise _fail("no such user has used the gateway")
        redis = settings.redis
        store = (RedisCounters(redis.url.get_secret_value(), redis.key_prefix, max(redis.timeout_seconds, 2), 0)
                 if redis.url is not None else MemoryCounters(engine))
        try:
            await store.load()
            return await consumption(store, rules, user_id, identities.find), store.shared
        except CountersUnavailable:
            raise _fail("redis.url is set but Redis does not answer") from None
        finally:
            await store.close()

    rows, live = _run_with_db(settings, work)
    if as_json:
        typer.echo(json.dumps({"rules": rows, "shared_counters": live}, indent=2))
        return
    _print(rows, with_usage=True)
    if not live:
        out.print("embedded counters: per-minute and in-flight counts live only in the gateway process "
                  "(GET /v1/admin/quotas); day and month counts are as of its last save")


def _print(rows: list[dict], with_usage: bool) -> None:
    from aiplane.config import QUOTA_LIMITS

    table = Table(title="Quotas")
    for column in ("scope", "subject", "source", "limit", "window", "allowed") + (("used", "%") if with_usage else ()):
        table.add_column(column, justify="right" if column in ("allowed", "used", "%") else "left")
    for row in rows:
        subject = row["subject"] + (" (per user)" if row["per_user"] else "")
        for name, window in QUOTA_LIMITS.items():
            if row[name] is None:
                continue
            cells = [row["scope"], subject, row["source"], name, window, f"{row[name]:g}"]
            if with_usage:
                usage = (row.get("usage") or {}).get(name)
                cells += ["-", "-"] if usage is None else [f"{usage['used']:g}",
                                                          "-" if usage["ratio"] is None else f"{usage['ratio']:.0%}"]
            table.add_row(*cells)
    out.print(table)
    if not rows:
        out.print("no quota rules")
