"""Webhook deliveries waiting to be sent, shared by replicas without double sends."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from ..domain import states
from ..domain.new_records import NewWebhookDelivery
from ..domain.states import DeliveryStatus
from .database import Statements, aware, now, rows_changed
from .models import WebhookDelivery


class WebhookOutbox(Statements):
    async def insert_delivery(self, new: NewWebhookDelivery) -> None:
        """A delivery due at once: PENDING, never attempted."""
        delivery = WebhookDelivery(
            id=new.id,
            job_id=new.job_id,
            organization_id=new.organization_id,
            event_type=new.event_type,
            url=new.url,
            payload=new.payload,
            status=str(DeliveryStatus.PENDING),
            attempts=0,
            next_attempt_at=new.created_at,
            last_error="",
            created_at=new.created_at,
        )
        self.session.add(delivery)
        await self.session.flush()

    async def claim_due_deliveries(self, limit: int, hold_seconds: float) -> list[WebhookDelivery]:
        """Due deliveries, pushed `hold_seconds` into the future so no other replica sends them.

        SKIP LOCKED on Postgres lets replicas share the queue without waiting on each other.
        """
        query = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == str(DeliveryStatus.PENDING),
                WebhookDelivery.next_attempt_at <= now(),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        deliveries = list((await self.session.scalars(query)).all())
        hold = now() + timedelta(seconds=hold_seconds)
        for delivery in deliveries:
            delivery.next_attempt_at = hold
        await self.session.flush()
        return deliveries

    async def next_delivery_due(self) -> datetime | None:
        """When the earliest pending delivery (a retry, or one held by a sender) is due."""
        due = await self.session.scalar(
            select(func.min(WebhookDelivery.next_attempt_at)).where(
                WebhookDelivery.status == str(DeliveryStatus.PENDING)
            )
        )
        return aware(due)

    async def finish_delivery(
        self,
        delivery_id: str,
        *,
        status: DeliveryStatus,
        attempts: int,
        next_attempt_at: datetime,
        error: str,
    ) -> bool:
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status.in_(states.delivery_sources(status)),
            )
            .values(
                status=str(status),
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_error=error,
            )
        )
        return rows_changed(result) == 1

    async def deliveries_for(self, job_id: str) -> list[WebhookDelivery]:
        return list(
            (
                await self.session.scalars(
                    select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                )
            ).all()
        )
