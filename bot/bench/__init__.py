"""`bot bench` and the cost views: measuring downloaded artifacts on this machine.

Offers: the bench run (`run`), its report and JSON schema (`report`, `schema`), and the cost
rows the cards' "What to pick" tables read (`cost_view`).
"""
