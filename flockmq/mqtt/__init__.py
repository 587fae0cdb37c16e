"""MQTT's rules, in one place for every role: packet types, reason codes
(and the 3.1.1 CONNACK return codes they map to), the protocol error that
carries one, and what a topic name and a topic filter are (shared
subscriptions, the `$` rule, levels). The codec (frontend/codec/) validates
client input with them at the edge; the router, the workers and the ACL
read them from here, never from the frontend."""
