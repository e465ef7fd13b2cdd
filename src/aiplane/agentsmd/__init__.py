"""AGENTS.md generator and staleness check: short files of verified facts."""
