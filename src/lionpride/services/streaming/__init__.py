"""Streaming foundations: the SSE decoder, stream chunks and the fan-out channel (DESIGN D4).

This package stands alone below the providers: it imports nothing from them.
"""

from __future__ import annotations

from lionpride.services.streaming.channel import StreamChannel, StreamChunk
from lionpride.services.streaming.sse import SSEDecoder, SSEEvent

__all__ = ["SSEDecoder", "SSEEvent", "StreamChannel", "StreamChunk"]
