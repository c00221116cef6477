"""The warm pool: spares kept ready, hand-outs, the waiting line, launches, culling and reconciliation."""

from .pool import Pool, Ticket

__all__ = ["Pool", "Ticket"]
