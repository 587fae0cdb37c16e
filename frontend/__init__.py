"""Acceptor processes: client sockets, the sans-IO MQTT codec, and listeners."""
