"""What visitors and operators see: pages, the visitor's path, the JSON API, admin and metrics."""
