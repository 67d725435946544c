"""A Prometheus text endpoint for hospital IT (`--metrics-port`): per feed the frames decoded,
analysed and dropped, the capture-to-result latency histogram, the stream state and the alarms up,
plus the version and weights that run. Read from the sessions at each scrape (`PipelineMetrics`,
the events detector), so nothing is counted twice."""
from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from monitor.metrics import LATENCY_BUCKETS_MS
from monitor.records import StreamState


class SessionCollector:
    """Metrics of the sessions `sessions()` returns at scrape time (a fixed list for `watch`, the
    feeds running now for the dashboard), each named by its feed."""

    def __init__(self, sessions: Callable[[], Iterable], version: str, weights: str):
        self.sessions, self.version, self.weights = sessions, version, weights

    def collect(self):
        info = GaugeMetricFamily("scopewatch_build_info", "ScopeWatch version and the weights it runs",
                                 labels=["version", "weights"])
        info.add_metric([self.version, self.weights], 1)
        yield info
        decoded = CounterMetricFamily("scopewatch_frames_decoded", "frames decoded", labels=["feed"])
        analysed = CounterMetricFamily("scopewatch_frames_analysed", "frames analysed by the model", labels=["feed"])
        dropped = CounterMetricFamily("scopewatch_frames_dropped", "frames dropped (analysis fell behind)", labels=["feed"])
        latency = HistogramMetricFamily("scopewatch_latency_seconds", "capture-to-result latency", labels=["feed"])
        state = GaugeMetricFamily("scopewatch_feed_state", "1 for the feed's stream state now", labels=["feed", "state"])
        alarms = GaugeMetricFamily("scopewatch_alarm_active", "1 while an alarm is up", labels=["feed", "alarm"])
        count = GaugeMetricFamily("scopewatch_alarms_active", "alarms up now", labels=["feed"])
        for session in self.sessions():
            feed, m = session.feed, session.monitor.metrics
            decoded.add_metric([feed], m.decoded)
            analysed.add_metric([feed], m.analysed)
            dropped.add_metric([feed], m.dropped)
            cumulative, buckets = 0, []
            for bound, n in zip((*LATENCY_BUCKETS_MS, float("inf")), m.latency_counts):
                cumulative += n
                buckets.append((str(bound / 1000.0) if bound != float("inf") else "+Inf", cumulative))
            latency.add_metric([feed], buckets, m.latency_sum_ms / 1000.0)
            for s in StreamState:
                state.add_metric([feed, s.value], 1.0 if m.state == s else 0.0)
            up = session.detector.alarms_up()
            for name in up:
                alarms.add_metric([feed, name], 1.0)
            count.add_metric([feed], len(up))
        yield from (decoded, analysed, dropped, latency, state, alarms, count)


def serve_metrics(port: int, host: str, sessions: Callable[[], Iterable], version: str, weights: str):
    """Serve /metrics on host:port in a background thread; returns the server (`.shutdown()`)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(SessionCollector(sessions, version, weights))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
