"""The order lifecycle: cancel, place with a client order id written first, resolve, recover.

Rules that make a duplicated or lost order impossible:

* the ledger row (`intent`, then `sent`) is committed before the venue hears of the order;
* a timeout or any unclear failure is resolved by looking the order up by its client order id,
  never by sending it again; while the venue cannot be asked, the order stays `unknown` and
  no new order is placed;
* a rate-limited send is retried only after a lookup confirms the venue does not have it;
* on every start, every non-final order is reconciled with the venue before anything else.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from treasury.crashpoints import crash_point
from treasury.ledger import Ledger, OrderRecord
from treasury.venues.base import (
    Side,
    Venue,
    VenueError,
    VenueInsufficientFunds,
    VenueInvalidOrder,
    VenueOrder,
    VenueRateLimited,
    VenueTimeout,
)

logger = logging.getLogger(__name__)

Alert = Callable[[str, str], None]


def new_client_order_id() -> str:
    """`fc` + 16 random hex digits: fits Kraken's 18 characters and maps to a Bitfinex cid."""
    return "fc" + secrets.token_hex(8)


def _log_alert(kind: str, message: str) -> None:
    logger.error("treasury alert kind=%s message=%s", kind, message)


@dataclass(frozen=True)
class ExecutorSettings:
    """Retry and back-off policy."""

    lookup_attempts: int = 5
    rate_limit_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    # A 'sent' order younger than this and absent at the venue may still be in flight.
    not_found_grace_s: float = 60.0


class Executor:
    """Places and resolves orders on named venues, recording every step in the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        venues: dict[str, Venue],
        settings: ExecutorSettings | None = None,
        alert: Alert | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.venues = venues
        self.settings = settings or ExecutorSettings()
        self.alert = alert or _log_alert
        self.sleep = sleep
        self.clock = clock
        self.backoffs: list[float] = []

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> list[OrderRecord]:
        """Reconcile every non-final ledger order with its venue; returns those still unresolved."""
        still: list[OrderRecord] = []
        for order in self.ledger.unresolved_orders():
            if order.venue not in self.venues:
                logger.warning("order on unconfigured venue cloid=%s", order.client_order_id)
                still.append(order)
                continue
            resolved = self.resolve(order)
            if not resolved.is_final and resolved.status in ("intent", "sent", "unknown"):
                still.append(resolved)
        crash_point("after_recover")
        return still

    def resolve(self, order: OrderRecord) -> OrderRecord:
        """Ask the venue about one order by client order id and record the answer."""
        venue = self.venues[order.venue]
        try:
            found = self._lookup(venue, order.client_order_id, order.symbol)
        except VenueError as exc:
            if order.status in ("unknown", "open", "partially_filled"):
                # Nothing new learned: a resting order stays as last seen until the venue answers.
                logger.warning("venue not answering cloid=%s error=%s", order.client_order_id, exc)
                return order
            return self.ledger.transition(
                order.client_order_id, "unknown", f"venue could not be asked: {exc}"
            )
        if found is not None:
            return self.ledger.apply_venue_order(found, now=self.clock())
        age = (self.clock() - order.updated_at).total_seconds()
        if order.status in ("sent", "unknown") and age < self.settings.not_found_grace_s:
            # The send may still be travelling; decide on the next pass.
            if order.status == "unknown":
                return order
            return self.ledger.transition(
                order.client_order_id, "unknown", "not at venue yet; send may be in flight"
            )
        if order.status in ("intent", "sent", "unknown"):
            return self.ledger.transition(
                order.client_order_id, "cancelled", "never reached the venue"
            )
        # A resting order the venue no longer knows: it cannot fill any more.
        return self.ledger.transition(
            order.client_order_id, "cancelled", "venue no longer reports the order"
        )

    # -- cancel ----------------------------------------------------------------------------
    def cancel_open_orders(self, venue_name: str, symbol: str) -> int:
        """Cancel our resting orders on the market, then record their final state."""
        venue = self.venues[venue_name]
        open_orders = self._with_rate_limit(
            lambda: venue.fetch_open_orders(symbol), f"open orders on {venue_name}"
        )
        # Only orders this ledger placed: an operator's manual orders on the account stay.
        ours = self.ledger.unresolved_orders(venue_name)
        cloids = {o.client_order_id for o in ours}
        venue_ids = {o.venue_order_id for o in ours if o.venue_order_id}
        cancelled = 0
        for order in open_orders:
            if order.order_id not in venue_ids and order.client_order_id not in cloids:
                logger.info("leaving a foreign order venue=%s id=%s", venue_name, order.order_id)
                continue
            self._with_rate_limit(
                lambda o=order: venue.cancel_order(o),  # type: ignore[misc]
                f"cancel {order.order_id}",
            )
            cancelled += 1
            logger.info("cancelled venue=%s id=%s", venue_name, order.order_id)
        crash_point("after_cancel")
        for record in self.ledger.unresolved_orders(venue_name):
            if record.symbol == symbol:
                self.resolve(record)
        return cancelled

    # -- place -----------------------------------------------------------------------------
    def place(
        self,
        venue_name: str,
        symbol: str,
        side: Side,
        amount: Decimal,
        price: Decimal,
        reference_price: Decimal | None = None,
        client_order_id: str | None = None,
    ) -> OrderRecord:
        """Place one limit order; the returned record says how it ended (or `unknown`)."""
        venue = self.venues[venue_name]
        cloid = client_order_id or new_client_order_id()
        crash_point("before_intent")
        self.ledger.record_intent(
            cloid, venue_name, symbol, side, amount, price, reference_price, now=self.clock()
        )
        crash_point("after_intent")
        self.ledger.transition(cloid, "sent")
        crash_point("after_sent_mark")
        for attempt in range(1, self.settings.rate_limit_attempts + 1):
            try:
                accepted = venue.create_limit_order(symbol, side, amount, price, cloid)
            except VenueRateLimited as exc:
                self._backoff(attempt, exc.retry_after_s)
                record = self._record_of(cloid)
                try:
                    found = self._lookup(venue, cloid, symbol)
                except VenueError as lookup_exc:
                    return self.ledger.transition(cloid, "unknown", str(lookup_exc))
                if found is not None:
                    return self.ledger.apply_venue_order(found, now=self.clock())
                logger.warning(
                    "rate-limited, not at venue: resending cloid=%s", record.client_order_id
                )
                continue
            except VenueInsufficientFunds as exc:
                self.alert("insufficient_funds", str(exc))
                return self.ledger.transition(cloid, "rejected", str(exc))
            except VenueInvalidOrder as exc:
                self.alert("invalid_order", str(exc))
                return self.ledger.transition(cloid, "rejected", str(exc))
            except VenueError as exc:
                # Timeout or unclear failure: the venue may have the order. Find it by client
                # order id, never resend.
                logger.warning("send outcome unknown cloid=%s error=%s", cloid, exc)
                return self._resolve_after_timeout(venue, cloid, symbol, exc)
            crash_point("after_venue_accept")
            record = self.ledger.apply_venue_order(_with_cloid(accepted, cloid), now=self.clock())
            crash_point("after_ledger_update")
            return record
        message = (
            f"{venue_name}: still rate-limited after {self.settings.rate_limit_attempts} tries"
        )
        self.alert("rate_limited", message)
        return self.ledger.transition(cloid, "cancelled", message)

    # -- internals -------------------------------------------------------------------------
    def _resolve_after_timeout(
        self, venue: Venue, cloid: str, symbol: str, cause: VenueError
    ) -> OrderRecord:
        for attempt in range(1, self.settings.lookup_attempts + 1):
            try:
                found = venue.fetch_order_by_client_id(cloid, symbol)
            except (VenueTimeout, VenueRateLimited, VenueError) as exc:
                logger.warning("lookup failed cloid=%s attempt=%d error=%s", cloid, attempt, exc)
                self._backoff(attempt, getattr(exc, "retry_after_s", None))
                continue
            if found is not None:
                return self.ledger.apply_venue_order(_with_cloid(found, cloid), now=self.clock())
            # Absent right after a timeout: it may still be travelling; the next start decides.
            return self.ledger.transition(
                cloid, "unknown", f"send outcome unclear ({cause}); not at venue yet"
            )
        message = f"order {cloid}: venue unreachable after {self.settings.lookup_attempts} lookups"
        self.alert("order_unknown", message)
        return self.ledger.transition(cloid, "unknown", message)

    def _lookup(self, venue: Venue, cloid: str, symbol: str) -> VenueOrder | None:
        last: VenueError | None = None
        for attempt in range(1, self.settings.lookup_attempts + 1):
            try:
                found = venue.fetch_order_by_client_id(cloid, symbol)
                return None if found is None else _with_cloid(found, cloid)
            except (VenueTimeout, VenueRateLimited) as exc:
                last = exc
                self._backoff(attempt, getattr(exc, "retry_after_s", None))
        assert last is not None
        raise last

    def _with_rate_limit(self, call: Callable[[], object], what: str) -> list[VenueOrder]:
        for attempt in range(1, self.settings.rate_limit_attempts + 1):
            try:
                result = call()
                return result if isinstance(result, list) else []
            except VenueRateLimited as exc:
                logger.warning("rate-limited what=%s attempt=%d", what, attempt)
                self._backoff(attempt, exc.retry_after_s)
        raise VenueRateLimited(f"{what}: still rate-limited after retries")

    def _backoff(self, attempt: int, retry_after_s: float | None) -> None:
        delay = retry_after_s or min(
            self.settings.backoff_s * 2 ** (attempt - 1), self.settings.max_backoff_s
        )
        self.backoffs.append(delay)
        self.sleep(delay)

    def _record_of(self, cloid: str) -> OrderRecord:
        record = self.ledger.get_order(cloid)
        assert record is not None
        return record


def _with_cloid(order: VenueOrder, cloid: str) -> VenueOrder:
    if order.client_order_id == cloid:
        return order
    from dataclasses import replace

    return replace(order, client_order_id=cloid)
