"""Precision, recall and F1 from judged units, per variant, severity and reviewer, plus cost,
latency and run-to-run spread. Pure functions over results.jsonl records."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0


def _prf(units: list[dict[str, Any]]) -> dict[str, Any]:
    findings = sum(len(u["findings"]) for u in units)
    golden = sum(len(u["golden"]) for u in units)
    matched = sum(len(u["matches"]) for u in units)
    precision, recall = _ratio(matched, findings), _ratio(matched, golden)
    return {"findings": findings, "golden": golden, "matched": matched, "false_positives": findings - matched,
            "missed": golden - matched, "precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """`{variant: metrics}` over every judged record (records with an error are counted, not scored)."""
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_variant[record["variant"]].append(record)
    return {variant: _variant(units) for variant, units in by_variant.items()}


def _variant(all_units: list[dict[str, Any]]) -> dict[str, Any]:
    units = [u for u in all_units if not u.get("error")]
    out: dict[str, Any] = {"units": len(all_units), "failed": len(all_units) - len(units),
                           "failures": sorted({f"{u['case_id']} (run {u['run']}): {u['error']}" for u in all_units if u.get("error")})[:50]}
    out.update(_prf(units))
    # Per severity: recall by the golden comment's severity, precision by the finding's.
    golden_by: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    finding_by: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    reviewer_by: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for unit in units:
        matched_golden = {g for g, _f in unit["matches"]}
        matched_findings = {f for _g, f in unit["matches"]}
        for index, golden in enumerate(unit["golden"]):
            golden_by[golden["severity"]][1] += 1
            golden_by[golden["severity"]][0] += index in matched_golden
        for index, finding in enumerate(unit["findings"]):
            hit = index in matched_findings
            finding_by[finding.get("severity") or "unknown"][1] += 1
            finding_by[finding.get("severity") or "unknown"][0] += hit
            for reviewer in (r for r in str(finding.get("source") or "unknown").split(", ") if r):
                reviewer_by[reviewer][1] += 1
                reviewer_by[reviewer][0] += hit
    out["recall_by_golden_severity"] = {s: {"matched": m, "golden": n, "recall": _ratio(m, n)} for s, (m, n) in sorted(golden_by.items())}
    out["precision_by_finding_severity"] = {s: {"matched": m, "findings": n, "precision": _ratio(m, n)} for s, (m, n) in sorted(finding_by.items())}
    out["precision_by_reviewer"] = {r: {"matched": m, "findings": n, "precision": _ratio(m, n)} for r, (m, n) in sorted(reviewer_by.items())}
    reviews = len(units)
    out["findings_per_review"] = round(out["findings"] / reviews, 3) if reviews else None
    out["verdicts"] = dict(sorted(Counter(u["verdict"] for u in units).items()))
    for name in ("input_tokens", "output_tokens", "cached_tokens"):
        out[f"{name}_per_review"] = round(sum(u[name] for u in units) / reviews, 1) if reviews else None
    priced = [u["cost_usd"] for u in units if u.get("cost_usd") is not None]
    out["cost_usd_per_review"] = round(sum(priced) / len(priced), 6) if priced else None
    out["unpriced_reviews"] = reviews - len(priced)
    latencies = [u["latency_s"] for u in units]
    out["latency_s"] = {"median": round(statistics.median(latencies), 3) if latencies else None, "p90": _percentile(latencies, 0.9)}
    out["judge"] = {"calls": sum(u.get("judge_calls", 0) for u in units),
                    "input_tokens": sum(u.get("judge_input_tokens", 0) for u in units),
                    "output_tokens": sum(u.get("judge_output_tokens", 0) for u in units),
                    "errors": sum(u.get("judge_errors", 0) for u in units),
                    "capped_units": sum(1 for u in units if u.get("judge_capped"))}
    runs = sorted({u["run"] for u in units})
    if len(runs) > 1:
        per_run = [_prf([u for u in units if u["run"] == run]) for run in runs]
        out["spread"] = {key: _spread([r[key] for r in per_run]) for key in ("precision", "recall", "f1")}
    return out


def _spread(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "stdev": None, "min": None, "max": None}
    return {"mean": round(statistics.mean(present), 4), "stdev": round(statistics.pstdev(present), 4),
            "min": min(present), "max": max(present)}
