"""unetbot engine: pure conversion, quantization and validation library (no network, no Hub)."""

__version__ = "0.1.0"
