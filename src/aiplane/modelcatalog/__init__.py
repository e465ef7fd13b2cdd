"""The model catalog (models.dev format): providers, models, prices and limits."""
