"""Delivers queued webhook events: signed with Standard Webhooks, retried with backoff.

A delivery row is written in the same transaction as the change it reports (events.py), so
a notification is never lost and never sent for a change that rolled back. The sender claims
due rows (pushing them into the future, so another replica leaves them alone), POSTs them,
and records the outcome. The receiver verifies `webhook-signature` over
`{webhook-id}.{webhook-timestamp}.{body}` and deduplicates by `webhook-id`, which stays the
same across retries.

Each attempt is signed with every secret of the organization that signs at that moment:
the current one and any still in a rotation's overlap, as several space-separated
signatures (Standard Webhooks), so a receiver holding either secret verifies. A failed
attempt is retried after an exponentially growing delay until the retry window (24 h by
default) from the event's creation has passed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import httpx
from standardwebhooks.webhooks import Webhook

from common import egress
from common.input_policy import InputPolicy, InputRefused

from ..domain.states import DeliveryStatus
from ..metrics import ServerMetrics
from ..store.database import aware
from ..store.models import WebhookDelivery
from ..store.outage import log_round_failure
from ..store.store import Store

log = logging.getLogger(__name__)

BATCH = 20
# A delivery in flight is hidden this long; longer than any one attempt takes.
HOLD_SECONDS = 60.0
# With nothing known to be due sooner, the queue is looked at this often (other replicas'
# rows, and retries after a restart).
POLL_SECONDS = 1.0
MIN_WAIT_SECONDS = 0.01
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


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt is tried again, and when the event is given up."""

    # The first retry's delay; each next one doubles, up to `max_backoff`.
    first_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(hours=1)
    # Given up once the next attempt would come later than this after the event.
    window: timedelta = timedelta(hours=24)
    # Given up after this many attempts too; 0: no cap but the window.
    max_attempts: int = 0

    def backoff(self, attempts: int) -> timedelta:
        """The delay after the `attempts`-th failed attempt: 1 s, 2 s, 4 s … (by default)."""
        # Past 2**40 the cap has long applied; stop doubling before the float overflows.
        factor = 2 ** min(attempts - 1, 40)
        return min(self.first_backoff * factor, self.max_backoff)

    def next_attempt(self, attempts: int, created: datetime, moment: datetime) -> datetime | None:
        """When to try again after `attempts` failed ones; None: give up."""
        if self.max_attempts and attempts >= self.max_attempts:
            return None
        next_at = moment + self.backoff(attempts)
        if next_at > created + self.window:
            return None
        return next_at


class WebhookSender:
    def __init__(
        self,
        store: Store,
        server_secret: str,
        policy: InputPolicy,
        *,
        retry: RetryPolicy,
        timeout_seconds: float,
        resolver: egress.Resolver | None = None,
        metrics: ServerMetrics | None = None,
        queued: asyncio.Event | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or ServerMetrics()
        self.resolver = resolver
        # Signs for organizations that never rotated a secret of their own.
        self.server_signer = Webhook(server_secret)
        self.policy = policy
        self.retry = retry
        self.timeout_seconds = timeout_seconds
        # Built once: loading the CA bundle for every POST's client cost 0.2-0.4 s a delivery.
        self.tls = ssl.create_default_context(cafile=certifi.where())
        # Set after a commit that queued a delivery (the use cases hold the same event).
        self.queued = queued or asyncio.Event()
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
                log_round_failure(log, "webhook delivery round failed")
                sent = 0
            if sent:
                continue
            # Woken at once by a local commit, else when the next retry is due; other
            # replicas' new rows by the poll.
            self.queued.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queued.wait(), timeout=await self._idle_seconds())

    async def _idle_seconds(self) -> float:
        try:
            async with self.store.transaction() as tx:
                due = await tx.webhook_deliveries.next_delivery_due()
        except Exception:
            log_round_failure(log, "reading the next webhook retry time failed")
            return POLL_SECONDS
        if due is None:
            return POLL_SECONDS
        wait = (due - datetime.now(UTC)).total_seconds()
        # Never quite 0: a row due but locked by another replica must not make a busy loop.
        return min(max(wait, MIN_WAIT_SECONDS), POLL_SECONDS)

    async def send_due(self) -> int:
        moment = datetime.now(UTC)
        async with self.store.transaction() as tx:
            due = await tx.webhook_deliveries.claim_due_deliveries(BATCH, HOLD_SECONDS)
            # Read once per round, at send time: a rotation applies to retries too.
            signing = {
                organization: await tx.webhook_settings.signing_secrets(organization, moment)
                for organization in {d.organization_id for d in due if d.organization_id}
            }
        for delivery in due:
            signers = [
                Webhook(secret) if secret else self.server_signer
                for secret in signing.get(delivery.organization_id or "", [None])
            ]
            error = await self._post(delivery.id, delivery.url, delivery.payload, signers)
            attempts = delivery.attempts + 1
            status, next_at = self._outcome(delivery, attempts, error)
            async with self.store.transaction() as tx:
                await tx.webhook_deliveries.finish_delivery(
                    delivery.id,
                    status=status,
                    attempts=attempts,
                    next_attempt_at=next_at,
                    error=error or "",
                )
            self.metrics.webhook_attempted(DELIVERY_OUTCOMES[status])
        return len(due)

    def _outcome(
        self, delivery: WebhookDelivery, attempts: int, error: str | None
    ) -> tuple[DeliveryStatus, datetime]:
        """The delivery's status after this attempt, and when it is next due."""
        moment = datetime.now(UTC)
        if error is None:
            return DeliveryStatus.DELIVERED, moment
        created = aware(delivery.created_at) or moment
        next_at = self.retry.next_attempt(attempts, created, moment)
        if next_at is None:
            log.warning(
                "webhook %s (%s) gave up after %d attempts: %s",
                delivery.id,
                delivery.event_type,
                attempts,
                error,
            )
            return DeliveryStatus.FAILED, moment
        return DeliveryStatus.PENDING, next_at

    async def _post(
        self, message_id: str, url: str, body: str, signers: list[Webhook]
    ) -> str | None:
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
            error = await self._post_through(session.proxy_url, message_id, url, body, signers)
            if session.refusals:
                return f"refused: {session.refusals[0].describe()}"
        return error

    async def _post_through(
        self, proxy_url: str, message_id: str, url: str, body: str, signers: list[Webhook]
    ) -> str | None:
        moment = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature_header(signers, message_id, moment, body),
        }
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds,
                follow_redirects=False,
                proxy=proxy_url,
                verify=self.tls,
                trust_env=False,  # no NO_PROXY may route around the proxy
            ) as client:
                response = await client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


def signature_header(signers: list[Webhook], message_id: str, moment: datetime, body: str) -> str:
    """`v1,<sig>` per signing secret, space-separated: a receiver verifies with any one."""
    return " ".join(signer.sign(message_id, moment, body) for signer in signers)
