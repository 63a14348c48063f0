"""Sensor firmware simulators: serial boards on ptys, MQTT nodes, thermal zones, faults."""
