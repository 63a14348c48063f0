"""Commands from outside (custody events, acknowledgements): who may send them, signed."""
