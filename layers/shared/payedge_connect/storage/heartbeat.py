"""A lease kept alive by a heartbeat while its holder works: a holder that crashes (a Lambda killed at its
timeout, an out-of-memory) stops beating, and the next worker takes the lease seconds later instead of
waiting out a lease as long as the longest run."""

import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from payedge_connect.observability import logger
from payedge_connect.storage.records import Lease, RecordsStore

# A live holder renews every HEARTBEAT_SECONDS; a lease not renewed for HEARTBEAT_TIMEOUT_SECONDS is free.
HEARTBEAT_SECONDS = 3.0
HEARTBEAT_TIMEOUT_SECONDS = 12.0


class HeldLease:
    """Take the connection's `name` lease and renew it in a background thread until the block ends.

    `held` is False when another holder has the lease (nothing to do). `lost` turns True when a renewal
    finds the lease taken (this holder was presumed dead): work not yet sent must not be sent."""

    def __init__(
        self,
        store: RecordsStore,
        connection_id: str,
        name: str,
        holder: str,
        *,
        clock: Callable[[], datetime],
        interval: float = HEARTBEAT_SECONDS,
        timeout: float = HEARTBEAT_TIMEOUT_SECONDS,
    ) -> None:
        self._store, self._clock, self._interval, self._timeout = store, clock, interval, timeout
        self.lease: Lease | None = store.acquire_lease(connection_id, name, holder, now=clock(), seconds=timeout)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self.lease is not None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def start(self) -> None:
        """Begin the heartbeat (if the lease is held)."""
        if self.lease is not None and self._thread is None:
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.lease.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the heartbeat and free the lease (if we still hold it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lease is not None:
            self._store.release_lease(self.lease)

    def __enter__(self) -> "HeldLease":
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _beat(self) -> None:
        assert self.lease is not None
        # The store's table is shared with the holder's thread: its client is thread-safe.
        while not self._stop.wait(self._interval):
            try:
                if not self._store.renew_lease(self.lease, now=self._clock(), seconds=self._timeout):
                    logger.warning("Lease lost", extra={"connection_id": self.lease.connection_id})
                    self._lost.set()
                    return
            except Exception:
                # A missed beat is not a lost lease: the next one may get through before the timeout.
                logger.exception("Lease heartbeat failed", extra={"connection_id": self.lease.connection_id})
