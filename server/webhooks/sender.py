"""Delivers queued webhook notifications: signed with Standard Webhooks, retried with backoff.

A delivery row is written in the same transaction that makes a job terminal, so a
notification is never lost and never sent for a change that rolled back. The sender claims
due rows (pushing them into the future, so another replica leaves them alone), POSTs them,
and records the outcome. The receiver verifies `webhook-signature` over
`{webhook-id}.{webhook-timestamp}.{body}` and deduplicates by `webhook-id`, which stays the
same across retries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from common import egress
from common.input_policy import InputPolicy, InputRefused

from ..domain.states import DeliveryStatus
from ..metrics import ServerMetrics
from ..store.store import Store

log = logging.getLogger(__name__)

BATCH = 20
# A delivery in flight is hidden this long; longer than any one attempt takes.
HOLD_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 300.0
# kiln_webhook_deliveries_total{outcome}: what became of one attempt.
DELIVERY_OUTCOMES = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.PENDING: "retried",
    DeliveryStatus.FAILED: "failed",
}


def webhook_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, or one generated once and kept in the data dir."""
    if configured:
        return configured
    path = data_dir / "webhook.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return path.read_text().strip()


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s … capped at five minutes."""
    return timedelta(seconds=min(2 ** (attempts - 1), MAX_BACKOFF_SECONDS))


class WebhookSender:
    def __init__(
        self,
        store: Store,
        secret: str,
        policy: InputPolicy,
        *,
        max_attempts: int,
        timeout_seconds: float,
        resolver: egress.Resolver | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or ServerMetrics()
        self.resolver = resolver
        self.signer = Webhook(secret)
        self.policy = policy
        self.max_attempts = max_attempts
        self.timeout_seconds = timeout_seconds
        self.queued = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("webhook delivery round failed")
                sent = 0
            if sent:
                continue
            # Woken at once by a local commit; retries and other replicas' rows by the poll.
            self.queued.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queued.wait(), timeout=1.0)

    async def send_due(self) -> int:
        async with self.store.transaction() as tx:
            due = await tx.claim_due_deliveries(BATCH, HOLD_SECONDS)
        for delivery in due:
            error = await self._post(delivery.id, delivery.url, delivery.payload)
            attempts = delivery.attempts + 1
            moment = datetime.now(UTC)
            if error is None:
                status, next_at = DeliveryStatus.DELIVERED, moment
            elif attempts >= self.max_attempts:
                status, next_at = DeliveryStatus.FAILED, moment
                log.warning(
                    "webhook %s gave up after %d attempts: %s", delivery.id, attempts, error
                )
            else:
                status, next_at = DeliveryStatus.PENDING, moment + backoff(attempts)
            async with self.store.transaction() as tx:
                await tx.finish_delivery(
                    delivery.id,
                    status=status,
                    attempts=attempts,
                    next_attempt_at=next_at,
                    error=error or "",
                )
            self.metrics.webhook_attempted(DELIVERY_OUTCOMES[status])
        return len(due)

    async def _post(self, message_id: str, url: str, body: str) -> str | None:
        """None when the receiver took it (2xx); otherwise why not.

        The POST goes through an egress proxy of its own: the destination is resolved once,
        checked, and connected to at exactly the checked address (DNS may answer otherwise
        now than at Create, or between a check and a connect). A 3xx is a failed attempt,
        never followed.
        """
        try:
            self.policy.check_syntax(url)
        except InputRefused as refused:
            return f"refused: {refused}"
        async with egress.session(
            self.policy, resolver=self.resolver, inspect_bodies=False
        ) as session:
            error = await self._post_through(session.proxy_url, message_id, url, body)
            if session.refusals:
                return f"refused: {session.refusals[0].describe()}"
        return error

    async def _post_through(
        self, proxy_url: str, message_id: str, url: str, body: str
    ) -> str | None:
        moment = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": self.signer.sign(message_id, moment, body),
        }
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds,
                follow_redirects=False,
                proxy=proxy_url,
                trust_env=False,  # no NO_PROXY may route around the proxy
            ) as client:
                response = await client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"
