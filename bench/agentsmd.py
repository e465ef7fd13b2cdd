"""AGENTS.md analysis on real repositories: time and the test/lint commands it finds.

    .venv/bin/python bench/agentsmd.py

The repositories are public packages whose sdists ship their full tree (tests, CI config,
tox/nox files), downloaded from PyPI when the bench runs; nothing is committed. A synthetic
5,000-file repository measures the time goal.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from aiplane.agentsmd.analyze import analyze  # noqa: E402

PACKAGES = ["attrs==24.2.0", "idna==3.7", "tomli==2.0.2", "packaging==24.1", "pluggy==1.5.0", "iniconfig==2.0.0"]


def fetch(work: Path, spec: str) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(work), spec],
                   check=True, capture_output=True)
    name, version = spec.split("==")
    sdist = next(work.glob(f"{name}-{version}.tar.gz"))
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    return work / f"{name}-{version}"


def synthetic(work: Path, files: int) -> Path:
    root = work / "synthetic"
    for i in range(files):
        path = root / "src" / f"pkg{i % 50}" / f"m{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("def f(x):\n    return x\n" * 20)
    (root / "pyproject.toml").write_text('[project]\nname = "s"\n[tool.pytest.ini_options]\n[tool.ruff]\n')
    return root


def timed(root: Path) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(3):
        started = time.perf_counter()
        result = analyze(root)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def main() -> None:
    print("| repository | files | analysis (ms) | test commands | lint commands |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repos = [fetch(work, spec) for spec in PACKAGES] + [synthetic(work, 5000)]
        for repo in repos:
            seconds, result = timed(repo)
            files = sum(1 for p in repo.rglob("*") if p.is_file())
            tests = "; ".join(f.value for f in result.test) or "—"  # type: ignore[attr-defined]
            lints = "; ".join(f.value for f in result.lint) or "—"  # type: ignore[attr-defined]
            print(f"| {repo.name} | {files} | {seconds * 1000:.0f} | {tests} | {lints} |")


if __name__ == "__main__":
    main()
