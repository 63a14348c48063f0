"""``coldchain demo``: a simulated micro-hub end to end.

``run`` (the command), ``scenario`` (the hub as a config), ``view`` (live table), ``services``.
"""
