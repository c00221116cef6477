"""Domain errors of the pool: a message for the visitor, one for the log, and an HTTP status."""

from __future__ import annotations


class PoolError(Exception):
    """Something the visitor must be told, with the status the web app answers."""

    status = 503
    visitor_message = "No notebook server can be started right now. Please try again in a moment."

    def __init__(self, log_message: str, *, retry_after: int = 10, visitor_message: str | None = None):
        super().__init__(log_message)
        self.log_message = log_message
        self.retry_after = retry_after
        if visitor_message:
            self.visitor_message = visitor_message


class PoolFull(PoolError):
    """Every container the cap allows is in use (or the waiting line is full)."""

    visitor_message = ("Every notebook server is in use right now. This page will try again by itself "
                       "in a few seconds.")


class PoolUnavailable(PoolError):
    """Containers keep failing to start: the circuit breaker is open."""

    visitor_message = ("Notebook servers are failing to start at the moment; the operators have been told. "
                       "Please try again in a minute.")


class QueueTimeout(PoolError):
    """A visitor waited in line longer than the pool's queue_timeout."""

    visitor_message = "Starting your notebook server took too long. Please try again."


class PoolClosed(PoolError):
    """The pool is shutting down."""

    visitor_message = "The workshop server is restarting. Please try again in a moment."
