"""The ledger: what the bot did, per repo and publish target, kept on the Hub.

Offers: its entries and merge rules (`model`), loading and saving it (`store`), rebuilding it
from the Hub's markers (`rebuild`, `target_check`), and `bot ledger` (`cli`).
"""
