"""Deterministic secret scan of the lines a change adds (detect-secrets, with its false-positive filters)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

from aiplane.review.changes import ChangeSet
from aiplane.review.report import Finding

# Entropy detectors flag hashes and ids constantly; the specific detectors are what we trust.
NOISY_TYPES = {"Base64 High Entropy String", "Hex High Entropy String"}
MAX_FILE_BYTES = 2 * 1024 * 1024


def scan(change: ChangeSet) -> list[Finding]:
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="aiplane-secrets-") as tmp:
        root = Path(tmp)
        targets = []
        candidates = [f for f in change.reviewable if f.added_lines]
        contents = change.head_texts()
        for file in candidates:
            content = contents.get(file.path)
            if not content or len(content) > MAX_FILE_BYTES:
                continue
            target = root / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            targets.append(file)
        with default_settings():
            collection = SecretsCollection(root=str(root))
            for file in targets:
                collection.scan_file(file.path)
            added = {f.path: set(f.added_lines) for f in targets}
            seen: set[tuple[str, int]] = set()
            for path, secret in collection:
                line = secret.line_number
                if secret.type in NOISY_TYPES or line not in added.get(path, set()) or (path, line) in seen:
                    continue
                seen.add((path, line))
                findings.append(
                    Finding(
                        file=path,
                        start_line=line,
                        end_line=line,
                        category="security",
                        severity="critical",
                        title=f"{secret.type} committed",
                        explanation=(
                            f"Line {line} adds a credential that detect-secrets identifies ({secret.type}). A secret "
                            "in version control is exposed to everyone with read access and stays in history."
                        ),
                        suggestion="Remove it, rotate the credential, and load it from the environment or a secret manager.",
                        confidence=0.9,
                        rule_id=None,
                        source="secret-scan",
                    )
                )
    return findings
