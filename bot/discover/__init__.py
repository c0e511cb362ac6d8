"""Discovery: listing the Hub's repos and judging each one from what the Hub says of it.

Offers: the listing passes (`listing`), the config's policy skips (`policy`), a repo's input
fingerprint (`fingerprint`), and one repo's verdict: candidate or why not (`scan`).
"""
