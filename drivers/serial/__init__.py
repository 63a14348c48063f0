"""Serial multi-probe sensor boards over a tty (pyserial)."""
