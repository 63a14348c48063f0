"""Cold-chain hub gateway: sensors in, durable journal, SOP rules, InfluxDB and MQTT out."""

__version__ = "0.1.0"
