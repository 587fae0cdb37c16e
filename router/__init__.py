"""The router process: the topic tree and the retained-message store."""
