"""Core building blocks: identity, events and the injectable clock."""

from lionpride.core.clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from lionpride.core.element import Element, to_uuid
from lionpride.core.event import Event, EventStatus, Execution

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "Element",
    "Event",
    "EventStatus",
    "Execution",
    "FakeClock",
    "SystemClock",
    "to_uuid",
]
