"""The plugins aiplane ships, registered in pyproject.toml like any third-party plugin."""
