"""nbpool's in-process reverse proxy (the front door on port 8000)."""
