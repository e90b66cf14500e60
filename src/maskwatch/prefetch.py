"""Read ahead on a thread, so decoding the next image or video frame overlaps inference on this one.

OpenCV's decoders and ONNX Runtime both release the GIL, so on a small CPU the decode of frame n+1 fills the gaps
that inference on frame n leaves. Order is kept, the queue is short (memory stays a few frames), an exception in
the reader reaches the consumer, and stopping early (``--show``, q) stops the reader.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], *, depth: int = 2) -> Iterator[T]:
    """``items`` in the same order, produced up to ``depth`` ahead by a daemon thread."""
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it in its own thread
            put(_Failure(error))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:  # a generator's cleanup (e.g. releasing a video capture) runs here, now
                close()
        put(_END)

    reader = threading.Thread(target=produce, name="maskwatch-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join(timeout=5.0)
