"""Framework-neutral NumPy oracle: reference losses, gradients, goldens, tolerances, data, evaluator.

This package never imports torch or tensorflow (a test enforces it), so both frameworks can be
checked against it in separate processes.
"""

__version__ = "0.1.0"
