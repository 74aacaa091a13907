"""Framework-neutral NumPy oracle: reference losses, gradients, goldens, tolerances, data, evaluator.

This package never imports torch or tensorflow (a test enforces it), so both frameworks can be
checked against it in separate processes.
"""

__version__ = "0.1.0"


class RosettaError(Exception):
    """An expected failure (bad input, missing data, an unusable file or folder) whose message
    says what went wrong and what to do: the command lines print it as one ``error:`` line and
    exit with status 2. Defined here, at the root, so that every layer can raise one; the run
    layer's kinds are in ``shared.run.errors``."""
