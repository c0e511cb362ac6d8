"""The jinja2 templates of model cards and PR descriptions.

Package data, read by bot/publish/cards.py.
"""
