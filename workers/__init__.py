"""Session-shard worker processes: sessions, QoS state and offline queues."""
