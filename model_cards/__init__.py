"""The jinja2 templates of model cards and PR descriptions (package data, read by bot/publish/cards.py)."""
