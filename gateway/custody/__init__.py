"""Custody of shipments: events, the hash-chained ledger, the CLI inbox, chain verification."""
