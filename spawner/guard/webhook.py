"""Telling the operator at once: a JSON POST to AbuseGuard.webhook_url when the guard acts, rate-limited."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

TIMEOUT = 10.0


class Webhook:
    """Sends messages in the background, at most ``per_hour()`` an hour; those held back are counted in the
    next one sent. The URL is a secret (it carries the receiver's token): it is never logged."""

    def __init__(self, url: Callable[[], str], per_hour: Callable[[], int], log: logging.Logger):
        self.url = url
        self.per_hour = per_hour
        self.log = log
        self.sent: collections.deque[float] = collections.deque()
        self.held_back = 0
        self.failures = 0
        self.tasks: set[asyncio.Task] = set()

    def send(self, message: dict) -> None:
        url = self.url()
        if not url:
            return
        now = time.monotonic()
        while self.sent and now - self.sent[0] > 3600:
            self.sent.popleft()
        if len(self.sent) >= self.per_hour():
            self.held_back += 1
            return
        self.sent.append(now)
        if self.held_back:
            message = {**message, "held_back": self.held_back,
                       "text": f"{message.get('text', '')} ({self.held_back} earlier messages held back by "
                               "AbuseGuard.webhook_per_hour)"}
            self.held_back = 0
        task = asyncio.get_running_loop().create_task(self._post(url, message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, url: str, message: dict) -> None:
        request = HTTPRequest(url, method="POST", body=json.dumps(message),
                              headers={"Content-Type": "application/json", "User-Agent": "nbpool-abuse-guard"},
                              request_timeout=TIMEOUT, connect_timeout=TIMEOUT, follow_redirects=False)
        try:
            await AsyncHTTPClient().fetch(request)
        except (HTTPClientError, OSError, TimeoutError) as exc:
            self.failures += 1
            # The URL is not named: it carries the receiver's secret.
            self.log.warning("abuse guard: the webhook (AbuseGuard.webhook_url) failed: %s",
                             getattr(exc, "code", None) or type(exc).__name__)
