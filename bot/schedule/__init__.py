"""A scheduled run's plan: which repos to convert this time.

Offers: the incremental pass over the listing and the ledger (`incremental`) and the plan of
jobs it hands to the workflow's matrix (`plan`).
"""
