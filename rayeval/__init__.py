"""rayeval: evaluate ML models in production at cluster scale on Ray Data."""

__version__ = "0.1.0"
