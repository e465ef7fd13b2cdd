"""The one place model calls are made from: any OpenAI-compatible endpoint, or Anthropic natively."""
