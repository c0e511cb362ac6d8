"""Publishing: what goes to the Hub, as data, and the Hub's markers of what is there.

Offers: the model cards (`cards`, `comfy_card`, `pick_card`), the commit plans and their
idempotent execution (`commit`), and the markers that say what was published from which
source revision (`state`).
"""
