"""The eval report: `report.json` (everything) and `report.md` (for people), in the output folder.

Figures are what the configured models produced; the run log names them. A report made with test
doubles says nothing about review quality, and the markdown says which judge decided the matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiplane.review.evaluation.harness import EvalOutcome


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _money(value: float | None) -> str:
    return "unpriced" if value is None else f"${value:.4f}"


def _cell(text: Any, limit: int = 80) -> str:
    # Names from datasets (reviewers, severities) go into tables: one line, no pipes or markup.
    return str(text).replace("|", "/").replace("\n", " ").replace("<", "‹").replace(">", "›")[:limit]


def write(outcome: EvalOutcome) -> tuple[Path, Path]:
    document = {"run": outcome.run_log, "summary": outcome.summary, "units": len(outcome.records)}
    json_path, md_path = outcome.out_dir / "report.json", outcome.out_dir / "report.md"
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(outcome.run_log, outcome.summary), encoding="utf-8")
    return json_path, md_path


def markdown(log: dict[str, Any], summary: dict[str, Any]) -> str:
    dataset = log["dataset"]
    lines = [
        "# Review eval" + (f": {_cell(log['label'])}" if log.get("label") else ""), "",
        f"- Dataset: {dataset['cases']} cases, sha256 `{dataset['sha256'][:16]}`",
        f"- aiplane {log['aiplane_version']}" + (f" at `{log['aiplane_commit'][:12]}`" if log.get("aiplane_commit") else ""),
        f"- Reviewer models: {', '.join(f'{t}={m}' for t, m in log['models'].items()) or 'none local'}"
        + (f"; through the gateway: {log['gateway_model']}" if log.get("gateway_model") else ""),
        f"- Judge: {log['judge']} (prompt sha256 `{log['judge_prompt_sha256'][:16]}`)",
        f"- Prompts sha256 `{log['prompts_sha256'][:16]}`; runs per case: {log['runs']}", "",
        "| variant | reviews | precision | recall | F1 | findings/review | input tok/review | cached tok/review | cost/review | latency median s | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in summary.items():
        reviews = m["units"] - m["failed"]
        lines.append(f"| {_cell(name)} | {reviews} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} | "
                     f"{m['findings_per_review']} | {m['input_tokens_per_review']} | {m['cached_tokens_per_review']} | "
                     f"{_money(m['cost_usd_per_review'])} | {m['latency_s']['median']} | {m['failed']} |")
    for name, m in summary.items():
        lines += ["", f"## {_cell(name)}", ""]
        lines.append(f"{m['matched']} of {m['golden']} golden findings found; {m['false_positives']} of {m['findings']} findings "
                     f"matched nothing. Verdicts: {', '.join(f'{_cell(k)} {v}' for k, v in m['verdicts'].items()) or 'none'}.")
        if m.get("spread"):
            s = m["spread"]
            lines.append(f"Across runs: precision {_pct(s['precision']['mean'])} ± {_pct(s['precision']['stdev'])}, recall "
                         f"{_pct(s['recall']['mean'])} ± {_pct(s['recall']['stdev'])}, F1 {_pct(s['f1']['mean'])} ± {_pct(s['f1']['stdev'])}.")
        lines += ["", "| golden severity | found | of | recall |", "| --- | --- | --- | --- |"]
        lines += [f"| {_cell(k)} | {v['matched']} | {v['golden']} | {_pct(v['recall'])} |" for k, v in m["recall_by_golden_severity"].items()]
        lines += ["", "| reviewer | matched | findings | precision |", "| --- | --- | --- | --- |"]
        lines += [f"| {_cell(k)} | {v['matched']} | {v['findings']} | {_pct(v['precision'])} |" for k, v in m["precision_by_reviewer"].items()]
        judge = m["judge"]
        if judge["calls"]:
            lines.append(f"\nJudge: {judge['calls']} calls, {judge['input_tokens']} input tokens, {judge['errors']} failed"
                         + (f", {judge['capped_units']} unit(s) hit the call cap" if judge["capped_units"] else "") + ".")
        if m["unpriced_reviews"]:
            lines.append(f"\n{m['unpriced_reviews']} review(s) used a model with no known price; cost/review leaves them out.")
        if m["failures"]:
            lines += ["", "Failed units (not scored):", *(f"- {_cell(f, 300)}" for f in m["failures"][:20])]
    if str(log["judge"]).startswith("location"):
        lines += ["", "_No judge model: a finding matched a golden comment only by file and overlapping lines, so golden "
                      "comments without a location could not be matched. Configure `review_eval.judge` for semantic matching._"]
    return "\n".join(lines) + "\n"
