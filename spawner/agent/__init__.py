"""nbpool's agent on each Swarm node (``python -m spawner.agent``): see node.py."""
