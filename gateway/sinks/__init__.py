"""Outputs fed from the journal: each has ``write(body, points)`` and ``close()``.

- ``influx``: InfluxDB line protocol over the v1 ``/write`` API or the v2 client.
"""
