"""flockmq: a multi-process MQTT broker that uses every CPU core."""

__version__ = "0.1.0"
