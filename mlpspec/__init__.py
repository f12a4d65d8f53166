"""mlpspec: declarative training of fully-connected networks written in NumPy.

The package reads top-down as the pipeline runs:
spec (what to do) -> data (verified inputs) -> nn (layers, losses, optimizers)
-> train -> evaluate, with the CLI on top.
"""

__version__ = "0.1.0"
