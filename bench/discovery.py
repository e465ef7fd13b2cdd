"""Compile and serve costs of agents-as-code and the discovery document.

    .venv/bin/python bench/discovery.py

Generates config source folders of 10, 100 and 500 agents (plus a fifth as many commands),
then reports the median time of `compile_source` (read, parse frontmatter, validate against the
OpenCode schema) and of rendering `/.well-known/opencode` from a warm cache, in process.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from aiplane.config import Settings  # noqa: E402
from aiplane.gateway.discovery import DiscoveryService  # noqa: E402
from aiplane.modelcatalog.catalog import bundled  # noqa: E402
from aiplane.orgconfig.compiler import compile_source  # noqa: E402

AGENT = """---
description: Agent {i} reviews changes in area {i}.
mode: subagent
temperature: 0.1
permission:
  edit: deny
  bash:
    "git diff*": allow
    "*": ask
---
You review changes in area {i}. What to flag: real defects. What NOT to flag: style.
""" + "Context line for the prompt body.\n" * 20


def make_source(root: Path, agents: int) -> Path:
    (root / "agents").mkdir(parents=True)
    (root / "commands").mkdir()
    (root / "config").mkdir()
    for i in range(agents):
        (root / "agents" / f"agent-{i}.md").write_text(AGENT.format(i=i))
    for i in range(max(agents // 5, 1)):
        (root / "commands" / f"cmd-{i}.md").write_text(f"---\ndescription: command {i}\nagent: agent-{i}\n---\nDo task {i}: $ARGUMENTS\n")
    (root / "config" / "base.toml").write_text('model = "anthropic/claude-sonnet-4-5"\n[permission]\nedit = "ask"\n')
    return root


def median_ms(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    catalog = bundled().data
    print("| agents | commands | compile median (ms) | served doc (KB) | render median (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for agents in (10, 100, 500):
        with tempfile.TemporaryDirectory() as tmp:
            source = make_source(Path(tmp) / "src", agents)
            assert compile_source(source).ok
            compile_ms = median_ms(lambda src=source: compile_source(src), 5 if agents == 500 else 15)
            settings = Settings(
                data_dir=Path(tmp) / "data",
                discovery={"config_source": source},
                providers={"openai": {"api_key": "sk-bench"}, "anthropic": {"api_key": "sk-bench"}},
            )
            service = DiscoveryService(settings, lambda: catalog)
            service.load()
            size = len(service.render("https://ai.example.com")) / 1024
            render_ms = median_ms(lambda svc=service: svc.render("https://ai.example.com"), 200)
            print(f"| {agents} | {max(agents // 5, 1)} | {compile_ms:.1f} | {size:.0f} | {render_ms:.3f} |")


if __name__ == "__main__":
    main()
