"""The parity harness: one comparison helper, the tolerance table, golden vectors, the canonical weights format and the step- and train-level parity. NumPy only; imports the oracle."""
