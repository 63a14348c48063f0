"""MQTT topic filters: matching a topic, and whether two filters can match one topic.

Pure functions (MQTT 3.1.1 section 4.7), shared by the config's overlap warning and the
driver's router.
"""

from __future__ import annotations

from collections.abc import Sequence


def split_filter(topic_filter: str) -> tuple[str, ...]:
    """A topic filter cut into its levels."""
    return tuple(topic_filter.split("/"))


def filter_matches(filter_levels: Sequence[str], topic: str) -> bool:
    """True when a topic matches a pre-split MQTT topic filter (``+`` and ``#`` wildcards)."""
    levels = topic.split("/")
    # MQTT 3.1.1 section 4.7.2: wildcards at the first level do not match $-topics.
    if topic.startswith("$") and filter_levels and filter_levels[0] in ("+", "#"):
        return False
    count = len(levels)
    for position, wanted in enumerate(filter_levels):
        if wanted == "#":
            return True
        if position >= count:
            return False
        if wanted != "+" and wanted != levels[position]:
            return False
    return len(filter_levels) == count


def filters_overlap(first: str, second: str) -> bool:
    """True when some topic matches both MQTT topic filters."""
    a, b = first.split("/"), second.split("/")
    wild = ("+", "#")
    # A wildcard first level never matches a $-topic (MQTT 3.1.1 section 4.7.2).
    if (a[0] in wild and second.startswith("$")) or (b[0] in wild and first.startswith("$")):
        return False
    for x, y in zip(a, b, strict=False):
        if x == "#" or y == "#":
            return True
        if "+" not in (x, y) and x != y:
            return False
    if len(a) == len(b):
        return True
    longer = a if len(a) > len(b) else b
    # "a/b" and "a/b/#": "#" also matches the parent level.
    return len(longer) == min(len(a), len(b)) + 1 and longer[-1] == "#"
