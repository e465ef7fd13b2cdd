"""The multi-agent code reviewer: change analysis, risk tiers, specialists, one structured review."""
