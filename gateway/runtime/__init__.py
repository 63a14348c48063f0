"""The process.

Composition root (daemon), driver reconnect loop, reload, status, sd_notify, logs.
"""
