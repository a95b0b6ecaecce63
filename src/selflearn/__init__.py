"""selflearn: the self-learning layer for conversational assistants."""

__version__ = "0.1.0"

__all__ = ["__version__"]
