"""The secret scan's fast path finds exactly what detect-secrets' per-line scan finds.

The scan runs every enabled detector's own patterns once over all added lines together and hands
detect-secrets only the lines some pattern touches, each distinct text once. These tests compare
that with the plain per-line scan on real source lines mixed with a key of every detector's format,
in the placements that could tell a joined-text search apart from a per-line one (line start and
end, trailing blanks, Unicode line separators, a key split over two lines, repeated lines).
"""

from __future__ import annotations

import random
import string
from pathlib import Path

from aiplane.review import secrets

RNG = random.Random(7)


def _rand(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
LOWER = string.ascii_lowercase + string.digits
UPPER = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
URLSAFE = ALNUM + "-_"


def _samples() -> list[str]:
    return [
        "AKIA" + _rand(UPPER, 16),
        f'aws_secret_access_key = "{_rand(ALNUM, 40)}"',
        " AKC" + _rand(ALNUM, 12) + '"',
        "AccountKey=" + _rand(ALNUM + "+/", 86) + "==",
        f"https://deploy:{_rand(ALNUM, 12)}@internal.example.org/repo.git",
        "M" + _rand(URLSAFE, 23) + "." + _rand(URLSAFE, 6) + "." + _rand(URLSAFE, 27),
        "ghp_" + _rand(ALNUM, 36),
        "glpat-" + _rand(URLSAFE, 20),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0." + _rand(URLSAFE, 43),
        _rand(LOWER, 32) + "-us12",
        "//registry.npmjs.org/:_authToken=npm_" + _rand(ALNUM, 36),
        "sk-" + _rand(ALNUM, 20) + "T3BlbkFJ" + _rand(ALNUM, 20),
        "-----BEGIN RSA PRIVATE KEY-----",
        "pypi-AgEIcHlwaS5vcmc" + _rand(URLSAFE, 80),
        "SG." + _rand(URLSAFE, 22) + "." + _rand(URLSAFE, 43),
        "xoxb-1234567890-" + _rand(LOWER, 24),
        "https://hooks.slack.com/services/T" + _rand(UPPER, 8) + "/B" + _rand(UPPER, 8) + "/" + _rand(ALNUM, 24),
        "sq0csp-" + _rand(URLSAFE, 43),
        "sk_live_" + _rand(ALNUM, 24),
        "123456789:" + _rand(URLSAFE, 35),
        "AC" + _rand(LOWER, 32),
        f'softlayer_api_key = "{_rand(HEX, 64)}"',
        f'cloudant_password = "{_rand(HEX, 64)}"',
        f'ibm_cloud_iam_api_key = "{_rand(URLSAFE, 44)}"',
        f'ibm_cos_hmac_secret_access_key = "{_rand(HEX, 48)}"',
    ]


def _placements(sample: str) -> list[str]:
    return [sample, f"    value = '{sample}'", f"{sample}   \t", f"x\u2028{sample}", f"{sample}\u2029tail",
            f"prefix={sample}", f'"{sample}"']


def _lines() -> list[str]:
    source = Path(secrets.__file__).resolve().parents[1]
    real = [line for path in sorted(source.rglob("*.py"))[:60] for line in path.read_text(encoding="utf-8").splitlines()]
    mixed = list(real)
    for sample in _samples():
        for placed in _placements(sample):
            mixed.insert(RNG.randrange(len(mixed) + 1), placed)
        # Cut in two across lines: neither half alone is a key, and must not become one.
        half = len(sample) // 2
        mixed += [sample[:half], sample[half:]]
    return mixed + mixed[:200]  # repeated lines: each must still be reported where it is


def _scan(texts: list[str], monkeypatch, fast: bool) -> set[tuple]:
    lines = secrets._Lines()
    for number, text in enumerate(texts, start=1):
        lines.add("src/module.py", number, text)
    if not fast:
        monkeypatch.setattr(secrets, "_could_match", lambda plugins, texts_: list(range(len(texts_))))
        monkeypatch.setattr(secrets, "_distinct", lambda texts_, owners: [(t, [o]) for t, o in zip(texts_, owners, strict=True)])
    hits, finished = secrets._scan_lines(lines, keyword=False, deadline=None)
    monkeypatch.undo()
    assert finished
    return {(path, number, kind, digest) for path, number, kind, digest, _line, _value in hits}


def test_the_fast_path_finds_what_the_per_line_scan_finds(monkeypatch):
    texts = _lines()
    slow = _scan(texts, monkeypatch, fast=False)
    fast = _scan(texts, monkeypatch, fast=True)
    assert fast == slow
    # Not vacuous: most detectors fire on their samples, in most placements.
    kinds = {kind for _path, _number, kind, _digest in slow}
    assert len(kinds) >= 15, kinds
    assert len(slow) >= 100


def test_repeated_lines_are_each_reported(monkeypatch):
    key = "AKIA" + _rand(UPPER, 16)
    texts = ["x = 1"] * 1000 + [f'KEY = "{key}"'] * 3 + ["x = 1"] * 10
    found = _scan(texts, monkeypatch, fast=True)
    assert sorted(number for _path, number, _kind, _digest in found) == [1001, 1002, 1003]


def test_a_detector_without_patterns_keeps_every_line():
    class Opaque:
        pass

    assert secrets._could_match([Opaque()], ["a", "b", "c"]) == [0, 1, 2]
