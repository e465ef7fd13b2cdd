"""Lines around a change: the head-side ranges of a patch's hunks and numbered windows around them.

Shared by the engine (the lines around each hunk go into the prefix every reviewer shares) and the
reviewers' `read_file` (which does not send them again); no model library is imported here, so the
parent process stays light.
"""

from __future__ import annotations

import re

# Lines either side of each changed hunk.
HUNK_CONTEXT_LINES = 40
HUNK_HEADER = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)


def hunk_ranges(patch: str) -> list[tuple[int, int]]:
    """The head-side line ranges of a patch's hunks (a pure deletion: the line it sits at)."""
    ranges = []
    for match in HUNK_HEADER.finditer(patch):
        start, count = int(match.group(1)), int(match.group(2) or 1)
        ranges.append((max(start, 1), max(start + count - 1, start, 1)))
    return ranges


def windows(ranges: list[tuple[int, int]], total: int, around: int = HUNK_CONTEXT_LINES) -> list[tuple[int, int]]:
    """Line windows of `around` lines either side of each range, merged where they touch."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        low, high = max(start - around, 1), min(end + around, total)
        if low > high:
            continue
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def around_hunks(lines: list[str], ranges: list[tuple[int, int]], skip_hunks: bool) -> list[str]:
    """Numbered runs of lines around the hunks; with `skip_hunks`, without the hunks' own lines
    (a patch in the prompt already shows them). Each run is one string."""
    skip = ranges if skip_hunks else []
    runs: list[list[int]] = []
    for low, high in windows(ranges, len(lines)):
        for n in range(low, high + 1):
            if any(a <= n <= b for a, b in skip):
                continue
            if runs and n == runs[-1][-1] + 1:
                runs[-1].append(n)
            else:
                runs.append([n])
    return ["\n".join(f"{n}: {lines[n - 1]}" for n in run) for run in runs]
