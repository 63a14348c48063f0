"""Applications on top of the gateway, never imported by `coldchain run`: demo, local services."""
