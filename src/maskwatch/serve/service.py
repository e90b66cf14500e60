"""Wiring: readers, the worker, the store writer, deliverers and the HTTP server, started and stopped in order.

Stopping ends open events (at their last sighting) and flushes writes; a start after ``kill -9`` first
ends the events this node left open.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from maskwatch.runtime.tracking import Tracker
from maskwatch.serve.cameras import CameraReader
from maskwatch.serve.config import ServeConfig, exposure_problem
from maskwatch.serve.delivery import Deliverers, MqttDelivery, WebhookDelivery
from maskwatch.serve.events import EventEngine, iso
from maskwatch.serve.http import HttpServer, ServiceHooks, create_app
from maskwatch.serve.store import Store, redacted
from maskwatch.serve.worker import BatchInference, CameraWork, Infer, LiveFrame, run_worker
from maskwatch.serve.writer import StoreWriter

log = logging.getLogger(__name__)


class Service:
    """One node of ``maskwatch serve``."""

    def __init__(self, config: ServeConfig, *, infer: Infer | None = None, insecure: bool = False):
        self.config, self.node, self.insecure = config, config.node, insecure
        self.stop_event = threading.Event()
        self.store = Store(config.store)
        self.infer = infer
        self.stats_every_s = config.mqtt.stats_interval_s if config.mqtt is not None else 30.0
        self.deliver = Deliverers()
        self.readers: list[CameraReader] = []
        self.works: list[CameraWork] = []
        self.writer: StoreWriter | None = None
        self.http: HttpServer | None = None
        self._worker: threading.Thread | None = None
        self.started = time.time()

    def start(self) -> Service:
        problem = exposure_problem(self.config.http, insecure=self.insecure)
        if problem:
            raise RuntimeError(problem)
        self.store.open()  # raises StoreError (one line) when unreachable
        ended = self.store.end_dangling(self.node)
        if ended:
            log.warning(
                "store: ended %d event(s) left open by an earlier run of node %s (at their last sighting)", ended, self.node
            )
        if self.config.mqtt is not None:
            self.deliver.mqtt = MqttDelivery(self.config.mqtt, client_id=f"maskwatch-{self.node}").start()
        if self.config.webhooks:
            self.deliver.webhooks = WebhookDelivery(self.config.webhooks).start()
        from maskwatch.serve.api.hub import EventHub
        from maskwatch.serve.api.metrics import ServeMetrics

        self.hub, self.metrics = EventHub(), ServeMetrics(self.stats)
        self.writer = StoreWriter(
            self.store, node=self.node, snapshots=self.config.snapshots, deliver=self.deliver, retention=self.config.retention,
            on_stored=self.hub.publish,
        ).start()  # fmt: skip
        batch = self.infer or BatchInference(
            model=self.config.model, detector=self.config.detector, detector_int8=self.config.detector_int8
        )
        if isinstance(batch, BatchInference):  # detector sessions (and the int8 graph, made once) before the first frame
            for size in sorted({camera.detector_size for camera in self.config.resolved_cameras()}):
                batch.detector_for(size)
        infer = self.metrics.timed(batch)
        labels = getattr(getattr(infer, "classifier", None), "labels", None) or ("with_mask", "without_mask", "mask_incorrect")
        for camera in self.config.resolved_cameras():
            reader = CameraReader(camera, on_status=self.deliver.camera_status)
            self.readers.append(reader)
            self.works.append(
                CameraWork(camera, reader, Tracker(tuple(labels)), EventEngine(camera.name, self.config.events, self.node))
            )
        if self.config.http.port:
            self.http = HttpServer(self._app(), self.config.http.host, self.config.http.port).start()
        for reader in self.readers:
            reader.start()
        self._worker = threading.Thread(
            target=run_worker, args=(self.works, infer, self.writer.submit, self.stop_event), name="worker", daemon=True
        )
        self._worker.start()
        log.info("serving %d camera(s) as node %s; store %s", len(self.readers), self.node, redacted(self.config.store))
        return self

    def _app(self):
        from maskwatch.serve.api import default_pipeline

        hooks = ServiceHooks(
            live=self, hub=self.hub, metrics=self.metrics, worker_alive=lambda: self._worker is not None and self._worker.is_alive(),
            pipeline=default_pipeline(self.config.model, self.config.detector),
        )  # fmt: skip
        return create_app(
            self.store, self.cameras_state, node=self.node, http=self.config.http, blur=self.config.snapshots.blur, hooks=hooks
        )

    def live_frame(self, camera: str) -> LiveFrame | None:
        """The newest processed frame of ``camera`` with its faces (the dashboard's live view)."""
        return next((w.view for w in self.works if w.camera.name == camera), None)

    def cameras_state(self) -> list[dict]:
        """The live camera list of ``GET /api/cameras``."""
        out = []
        for work, reader in zip(self.works, self.readers):
            state = reader.state
            out.append(
                {
                    "name": reader.name,
                    "status": state.status,
                    "reason": state.reason,
                    "fps": round(work.fps, 2),
                    "last_frame_time": iso(state.last_frame_time),
                    "counts": dict(work.engine.counts),
                }
            )
        return out

    def stats(self) -> dict:
        """What ``PREFIX/stats`` carries: per-camera figures and what had to be dropped."""
        return {
            "node": self.node,
            "time": iso(time.time()),
            "uptime_s": round(time.time() - self.started, 1),
            "cameras": {
                w.camera.name: {
                    "fps": round(w.fps, 2),
                    "read_fps": round(r.state.fps, 2),
                    "frames": w.frames,
                    "skipped_frames": max(0, r.state.frames_read - w.frames),
                    "latency_ms": round(w.latency_ms, 1),
                    "status": r.state.status,
                    "faces": dict(w.faces_by_label),
                }
                for w, r in zip(self.works, self.readers)
            },
            "dropped": {
                "store": self.writer.dropped + self.writer.inbox.dropped if self.writer else 0,
                "delivery": self.deliver.dropped(),
            },
            "events": dict(self.writer.events_by_type) if self.writer else {},
        }

    def run(self) -> None:
        """Until SIGINT/SIGTERM (or ``stop_event``): watchdogs and stats; then a clean stop."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        next_stats = time.monotonic() + self.stats_every_s
        try:
            while not self.stop_event.wait(0.5):
                for reader in self.readers:
                    reader.watchdog()
                if time.monotonic() >= next_stats:
                    next_stats += self.stats_every_s
                    self.deliver.stats(self.stats())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.shutdown()

    def _on_signal(self, signum: int, _frame) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        self.stop_event.set()

    def shutdown(self) -> None:
        """Stop readers and the worker (it ends open events), flush the store, say offline, stop HTTP."""
        self.stop_event.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
        for reader in self.readers:
            reader.stop()
        if self.writer is not None:
            self.writer.close()
        self.deliver.close()
        if self.http is not None:
            self.http.stop()
        self.store.close()
        log.info("stopped")
