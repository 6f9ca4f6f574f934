"""tradeoffs: a reproducible experiment pipeline for ML efficiency trade-offs."""

__version__ = "0.1.0"
