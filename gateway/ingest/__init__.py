"""From driver output to journal rows.

Normalise and calibrate, then batch, commit and acknowledge.
"""
