"""The LLM gateway: identity, key injection, anonymous attribution, streaming relay and usage."""
