"""The parity suite: the same scenarios under the test plugin and against the served app."""
