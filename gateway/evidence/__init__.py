"""Claim evidence: every journaled record in one tamper-evident history, signed and anchored."""
