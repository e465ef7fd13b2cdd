"""`aiplane config`: agents and commands as code, compiled and validated for OpenCode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiplane.cli.common import _fail, err, out

config_app = typer.Typer(help="Agents and commands as code: compile a config source folder for OpenCode.", no_args_is_help=True)


def _compile_or_exit(source: Path):  # noqa: ANN202
    from aiplane.orgconfig.compiler import compile_source

    result = compile_source(source)
    if not result.ok:
        for problem in result.problems:
            err.print(str(problem), highlight=False, markup=False, soft_wrap=True)
        count = len(result.problems)
        raise _fail(f"{source}: {count} problem{'s' if count != 1 else ''}; nothing was written")
    for warning in result.warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    return result


@config_app.command("build")
def config_build(
    source: Annotated[Path, typer.Argument(help="Config source folder (agents/, commands/, config/).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the OpenCode config.")] = Path("opencode.json"),
) -> None:
    """Compile SOURCE into one OpenCode config and validate it against OpenCode's schema."""
    from aiplane.orgconfig.compiler import write_atomic

    result = _compile_or_exit(source)
    assert result.config is not None
    try:
        write_atomic(output, result.config)
    except OSError as exc:
        raise _fail(f"cannot write {output} ({exc.__class__.__name__})") from None
    agents, commands = len(result.config.get("agent", {})), len(result.config.get("command", {}))
    out.print(f"wrote {output}: {agents} agents, {commands} commands")


@config_app.command("check")
def config_check(
    source: Annotated[Path, typer.Argument(help="Config source folder (agents/, commands/, config/).")],
) -> None:
    """Validate SOURCE without writing anything. Literal secrets are warned about on stderr (exit 0)."""
    from aiplane.orgconfig.compiler import schema_version

    result = _compile_or_exit(source)
    assert result.config is not None
    out.print(f"{source}: valid against the OpenCode {schema_version()} config schema")
