"""`aiplane review eval` and `aiplane review eval-prepare`: review quality on public benchmarks and
on a team's own history (logic in `aiplane.review.evaluation`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from aiplane.cli.common import EXIT_CONFIG, ConfigOption, _fail, _run_with_db, _settings, err, out
from aiplane.cli.review import review_app


@review_app.command("eval")
def review_eval(
    dataset: Annotated[Optional[Path], typer.Argument(help="Cases as JSONL or JSON (see docs/review-eval.md).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for run.json, results.jsonl and the report.")] = Path("review-eval"),
    variant: Annotated[Optional[list[str]], typer.Option(
        "--variant", help="review (default), baseline, tier=trivial|lite|full, agents=a+b, or tier=..,agents=..; repeat for several.")] = None,
    runs: Annotated[int, typer.Option(min=1, max=20, help="Runs per case and variant (spread is reported when > 1).")] = 1,
    concurrency: Annotated[Optional[int], typer.Option(min=1, max=32, help="Units in flight (default: review_eval.concurrency).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip units already in results.jsonl (same dataset, models and prompts).")] = True,
    label: Annotated[str, typer.Option(help="A name for this run on the dashboard.")] = "",
    record: Annotated[bool, typer.Option(help="Store the summary in the database (the dashboard's Reviews page).")] = True,
    from_history: Annotated[bool, typer.Option("--from-history", help="Build the cases from merged PRs/MRs and their human review comments.")] = False,
    vcs: Annotated[str, typer.Option(help="With --from-history: github or gitlab.")] = "github",
    repository: Annotated[Optional[str], typer.Option(
        "--repository", help="With --from-history: owner/name (GitHub, default $GITHUB_REPOSITORY) or a project id/path (GitLab, default $CI_PROJECT_ID).")] = None,
    last: Annotated[int, typer.Option(min=1, max=1000, help="With --from-history: this many merged PRs/MRs with human comments.")] = 20,
    clone: Annotated[Path, typer.Option(help="With --from-history: the local clone the cases are reviewed in.")] = Path("."),
    save_dataset: Annotated[Optional[Path], typer.Option(help="With --from-history: also write the cases here as JSONL.")] = None,
    config: ConfigOption = None,
) -> None:
    """Run the reviewer (and baselines or ablations) over golden cases; report precision, recall, F1 and cost.

    Exit codes: 0 done (failed units are listed in the report), 1 the eval could not run, 2 bad arguments or data.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aiplane.review.evaluation import report
    from aiplane.review.evaluation.dataset import DatasetError, load
    from aiplane.review.evaluation.harness import EvalError, EvalOptions, run_eval
    from aiplane.review.evaluation.variants import VariantError, parse_variant
    from aiplane.vcs.model import VcsError

    settings = _settings(config)
    try:
        variants = [parse_variant(v) for v in (variant or ["review"])]
    except VariantError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    try:
        if from_history:
            if dataset is not None:
                raise _fail("give a dataset file or --from-history, not both", EXIT_CONFIG)
            data = _history(vcs, repository, clone, last, settings)
            if save_dataset is not None:
                from aiplane.review.evaluation.dataset import dump

                save_dataset.write_text(dump(data.cases), encoding="utf-8")
        elif dataset is None:
            raise _fail("give a dataset file (or --from-history)", EXIT_CONFIG)
        else:
            data = load(dataset)
    except (DatasetError, VcsError) as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    options = EvalOptions(out_dir=out_dir, variants=variants, runs=runs, concurrency=concurrency or settings.review_eval.concurrency,
                          judge=settings.review_eval.judge, resume=resume, label=label)
    if not settings.llm.models and not settings.review.gateway_url:
        raise _fail("aiplane review eval needs a model: set [llm.models.specialist] (or review.gateway_url and review.model); "
                    "nothing is measured without one", EXIT_CONFIG)
    if options.judge is None:
        err.print("No judge model (review_eval.judge): findings match golden comments by file and overlapping lines only.", markup=False)
    total = len(data.cases) * len(variants) * runs
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        task = progress.add_task("reviewing", total=total)

        def on_unit(done: int, _total: int, record: dict) -> None:
            progress.update(task, completed=done, description=f"{record['variant']} {record['case_id'][:40]}")

        try:
            outcome = run_eval(data, settings, options, dict(os.environ), on_unit=on_unit)
        except EvalError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt:
            err.print(f"Interrupted: finished units are in {out_dir / 'results.jsonl'}; run the same command to resume.", markup=False)
            raise typer.Exit(130) from None
    json_path, md_path = report.write(outcome)
    if record:
        from aiplane.review.evaluation.store import record as store_record

        _run_with_db(settings, lambda engine: store_record(engine, outcome.run_log, outcome.summary, str(out_dir.resolve())))
    for name, m in outcome.summary.items():
        pct = lambda v: "–" if v is None else f"{v * 100:.1f}%"  # noqa: E731
        out.print(f"{name}: precision {pct(m['precision'])}, recall {pct(m['recall'])}, F1 {pct(m['f1'])}, "
                  f"{m['findings_per_review']} findings/review, {m['failed']} failed", markup=False, highlight=False)
    out.print(f"ran {outcome.ran} unit(s), {outcome.skipped} already done; report: {md_path} and {json_path}", markup=False, highlight=False)


def _history(vcs: str, repository: str | None, clone: Path, last: int, settings):  # noqa: ANN001, ANN202
    from aiplane.review.evaluation.dataset import Dataset, dump
    from aiplane.review.evaluation.sources import github_client, github_history, gitlab_client, gitlab_history

    bots = frozenset(b.lower().removesuffix("[bot]") for b in ([settings.review.bot_login] if getattr(settings.review, "bot_login", None) else []))
    if vcs == "github":
        name = repository or os.environ.get("GITHUB_REPOSITORY", "")
        api = github_client(os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_API_URL", "https://api.github.com"))
        try:
            cases = github_history(api, name, clone.resolve(), last, bots | {"github-actions"})
        finally:
            api.close()
    elif vcs == "gitlab":
        project = repository or os.environ.get("CI_PROJECT_ID", "")
        api = gitlab_client(os.environ.get("GITLAB_TOKEN", ""), os.environ.get("CI_API_V4_URL", "https://gitlab.com/api/v4"))
        try:
            cases = gitlab_history(api, project, clone.resolve(), last, bots)
        finally:
            api.close()
    else:
        raise _fail("--vcs must be github or gitlab", EXIT_CONFIG)
    if not cases:
        raise _fail(f"no merged change with human review comments found in the last pages of {vcs}", EXIT_CONFIG)
    import hashlib

    text = dump(cases)
    return Dataset(f"{vcs}:{repository or 'history'}", cases, hashlib.sha256(text.encode()).hexdigest())


@review_app.command("eval-prepare")
def review_eval_prepare(
    golden_dir: Annotated[Path, typer.Argument(help="Martian's offline/golden_comments folder.")],
    clone: Annotated[list[str], typer.Option(help="NAME=PATH: the clone for golden file NAME.json (e.g. sentry=~/src/sentry); repeat.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the dataset (JSONL).")] = Path("martian.jsonl"),
    fetch: Annotated[bool, typer.Option(help="Fetch missing base/head commits into the clones.")] = True,
) -> None:
    """Map the Martian offline benchmark's PRs to base/head commits in your clones (GitHub API; GITHUB_TOKEN optional)."""
    from aiplane.review.evaluation.dataset import DatasetError, dump
    from aiplane.review.evaluation.sources import github_client, prepare_martian
    from aiplane.vcs.model import VcsError

    clones = {}
    for item in clone:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise _fail(f"--clone {item!r}: expected NAME=PATH", EXIT_CONFIG)
        clones[name] = Path(path).expanduser().resolve()
    api = github_client(os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    try:
        cases = prepare_martian(golden_dir, clones, api, fetch=fetch)
    except (DatasetError, VcsError) as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    finally:
        api.close()
    output.write_text(dump(cases), encoding="utf-8")
    out.print(f"wrote {len(cases)} case(s) with {sum(len(c.golden) for c in cases)} golden comment(s) to {output}", markup=False, highlight=False)
