"""The hub's SOPs as pure rules on event time, and the engine that turns them into alerts."""
