"""Container engines behind one contract (``base.ContainerBackend``): one module per engine."""
