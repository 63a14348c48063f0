"""Shared kernel: domain records, clock, errors, backoff, counters.

No I/O; imports nothing above it.
"""
