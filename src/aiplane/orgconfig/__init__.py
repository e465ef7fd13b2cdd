"""Agents and commands as code, compiled into a validated OpenCode config and served for discovery."""
