"""An iModel's live state: what its calls read on every call, and what ``aclose`` ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from lionpride.services._limits import BuiltLimits, Limits
from lionpride.services._sync import PrivateThread, SyncLoop
from lionpride.services.observability.observer import ModelObserver
from lionpride.services.utilities.adaptive import LimitLearner

__all__ = ["ModelRuntime"]


class ModelRuntime:
    """An iModel's live state: its observer, its limits and what ``aclose`` must close
    besides the backend.

    A plain object in the model's instance dict: pydantic private attributes cost ~1 µs
    per read, and every call reads these.
    """

    __slots__ = (
        "capacity",
        "closers",
        "home",
        "keeps_session",
        "limits",
        "observer",
        "own_prices",
        "owns_executor",
        "reopens",
        "splits",
        "sync",
    )

    def __init__(
        self, observer: ModelObserver, built: BuiltLimits, *, keeps_session: bool, own_prices: bool
    ) -> None:
        self.observer = observer
        #: The limits in force (``limit_key`` filled in when they are shared in Redis).
        self.limits: Limits = built.limits
        #: What ``aclose`` closes besides the backend (Redis connections).
        self.closers: list[Callable[[], Awaitable[None]]] = built.closers
        #: Whether the backend is a CLI whose session id the next call resumes.
        self.keeps_session = keeps_session
        #: Whether ``aclose`` closes the executor (one the model built, not one passed in).
        self.owns_executor = built.owns_executor
        #: Whether the price table was the caller's (kept by ``to_dict``), not the shipped one.
        self.own_prices = own_prices
        #: The limits learned from the provider, when the model learns them.
        self.capacity: LimitLearner | None = built.capacity
        #: Whether ``aclose`` leaves the executor taking calls (limits only learned, none
        #: configured: the model's own state, usable again after closing).
        self.reopens = built.capacity is not None and not built.limits.bounded
        #: Whether the backend splits requests over its per-request cap (embeddings).
        self.splits = False
        #: The private event loop of ``invoke_sync``, made on its first use.
        self.sync: SyncLoop | None = None
        #: The event loop of the model's last async call (``invoke_sync``'s own excepted).
        self.home: asyncio.AbstractEventLoop | None = None

    def note_home(self) -> None:
        """Remember the loop running this call as the model's async home, unless it is the
        private loop of ``invoke_sync`` (blocking calls from other threads go to the home).

        Runs once per call: the usual case (the home again) costs a thread-id comparison.
        """
        home = self.home
        if getattr(home, "_thread_id", None) == threading.get_ident():
            return
        if not isinstance(threading.current_thread(), PrivateThread):
            self.home = asyncio.get_running_loop()

    def loop(self) -> SyncLoop:
        """The private event loop of ``invoke_sync`` (made on first use)."""
        if self.sync is None:
            self.sync = SyncLoop()
        return self.sync
