"""The malformed-packet corpus: cases generated from the MQTT 3.1, 3.1.1 and
5.0 specifications (cases.py), run concurrently against the real broker
(runner.py) by test_corpus.py."""
