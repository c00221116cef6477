"""nbpool's orchestrator: the container backend, the warm pool and the web app."""

__version__ = "0.1.0"
