"""``/metrics`` in Prometheus text: each app has its own registry (tests and several apps never share counters).

Per-camera figures are read from the service's ``stats()`` at scrape time (no second bookkeeping); the inference
latency histogram is fed by the worker (through :meth:`ServeMetrics.timed`) and by ``/api/detect``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

#: Seconds; one CenterFace + classifier pass on a 2-core CPU is tens of milliseconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StatsCollector:
    """Metric families from ``stats()`` (the dict ``Service.stats`` returns, also sent on MQTT)."""

    def __init__(self, stats: Callable[[], dict] | None, extra: Callable[[], dict] | None = None):
        self.stats, self.extra = stats, extra

    def collect(self) -> Iterator[Metric]:
        stats = self.stats() if self.stats is not None else {"cameras": {}, "dropped": {}, "events": {}}
        cameras: dict[str, dict[str, Any]] = stats.get("cameras", {})
        frames = CounterMetricFamily("maskwatch_frames", "Frames processed by the worker", labels=["camera"])
        read = CounterMetricFamily("maskwatch_frames_read", "Frames read from the camera", labels=["camera"])
        skipped = CounterMetricFamily(
            "maskwatch_frames_skipped", "Frames read but never processed (newest only)", labels=["camera"]
        )
        fps = GaugeMetricFamily("maskwatch_fps", "Processed frames per second", labels=["camera"])
        up = GaugeMetricFamily("maskwatch_camera_online", "1 when the camera is online", labels=["camera"])
        faces = CounterMetricFamily("maskwatch_faces", "Faces classified, by label", labels=["camera", "label"])
        for name, cam in cameras.items():
            frames.add_metric([name], cam.get("frames", 0))
            read.add_metric([name], cam.get("frames", 0) + cam.get("skipped_frames", 0))
            skipped.add_metric([name], cam.get("skipped_frames", 0))
            fps.add_metric([name], cam.get("fps", 0.0))
            up.add_metric([name], 1.0 if cam.get("status") == "online" else 0.0)
            for label, n in cam.get("faces", {}).items():
                faces.add_metric([name, label], n)
        events = CounterMetricFamily("maskwatch_events", "Event messages stored, by type", labels=["type"])
        for kind in ("new", "update", "end"):
            events.add_metric([kind], stats.get("events", {}).get(kind, 0))
        dropped = CounterMetricFamily("maskwatch_dropped", "Messages dropped by a full queue or buffer", labels=["queue"])
        for queue, n in {**stats.get("dropped", {}), **(self.extra() if self.extra else {})}.items():
            dropped.add_metric([queue], n)
        yield from (frames, read, skipped, fps, up, faces, events, dropped)


class ServeMetrics:
    """The registry of one app, and the histogram the worker and ``/api/detect`` feed."""

    def __init__(self, stats: Callable[[], dict] | None = None):
        self.registry = CollectorRegistry()
        self.inference = Histogram(
            "maskwatch_inference_seconds",
            "Inference time: a worker batch (all due cameras) or one /api/detect image",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.collector = StatsCollector(stats)
        self.registry.register(self.collector)

    def observe_detect(self, seconds: float) -> None:
        self.inference.labels("detect").observe(seconds)

    def timed(self, infer: Callable[[Sequence], list]) -> Callable[[Sequence], list]:
        """``infer`` with each call's time recorded under ``path="worker"``."""
        histogram = self.inference.labels("worker")

        def run(items: Sequence) -> list:
            started = time.perf_counter()
            try:
                return infer(items)
            finally:
                histogram.observe(time.perf_counter() - started)

        run.classifier = getattr(infer, "classifier", None)  # type: ignore[attr-defined] - the service reads its labels
        return run
