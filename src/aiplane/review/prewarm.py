"""Deciding, from the command line and the environment alone, whether `aiplane review` starts its
model worker before anything else: this runs before the CLI imports typer or reads settings, so it
must stay cheap (no settings parsing, no third-party imports)."""

from __future__ import annotations

import os

from aiplane.review.runner import DEFAULT_MEMORY_CAP, prestart

NO_WORKER_FLAGS = ("--dry-run", "--help", "-h")
SUBCOMMANDS = ("plugins",)
MODEL_ENV_PREFIXES = ("AIPLANE_LLM__MODELS__", "AIPLANE_REVIEW__GATEWAY_URL", "AIPLANE_REVIEW__MODEL")


def wants_worker(args: list[str], environ: dict[str, str] | os._Environ) -> bool:
    """A review that will likely call a model: no dry run, no help, no subcommand, and a model (or
    a settings file, which may name one) in sight. A wrong guess costs a killed process, nothing more."""
    if any(a in NO_WORKER_FLAGS for a in args) or (args and args[0] in SUBCOMMANDS):
        return False
    if environ.get("AIPLANE_REVIEW__PRESTART", "").lower() in ("0", "false", "no", "off"):  # review.prestart = false
        return False
    if any(k.startswith(MODEL_ENV_PREFIXES) for k in environ):
        return True
    return bool(environ.get("AIPLANE_CONFIG")) or "--config" in args or any(a.startswith("--config=") for a in args) \
        or os.path.exists("aiplane.toml")


def maybe_prestart(args: list[str]) -> None:
    if not wants_worker(args, os.environ):
        return
    cap = DEFAULT_MEMORY_CAP
    raw = os.environ.get("AIPLANE_REVIEW__MEMORY_CAP_MB")
    if raw is not None:
        try:
            cap = int(raw) * 1024 * 1024
        except ValueError:
            return  # settings will reject it with a clear message; start nothing
    prestart(cap)
