"""Serving the dashboard: who may reach it (loopback, or a password off it), the page's own CSS and
JavaScript, the feeds started at launch, and a clean stop on Ctrl-C."""
from __future__ import annotations

import ipaddress
import time
from pathlib import Path

from apps.dashboard.layout import build_app
from monitor.config import ScopeWatchConfig
from monitor.sources import SourceError

STATIC = Path(__file__).resolve().parent / "static"


class ServeError(Exception):
    """The dashboard cannot be served as asked: one line for the user."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, auth: str | None) -> tuple[str, str] | None:
    """The (user, password) pair to require, or None on loopback without one."""
    if not is_loopback(host) and not auth:
        raise ServeError(f"refusing to serve on {host} without --auth USER:PASS (or SCOPEWATCH_AUTH): "
                         "a surgical feed must not be open to the network")
    if auth and ":" not in auth:
        raise ServeError("--auth must look like USER:PASS")
    return tuple(auth.split(":", 1)) if auth else None


def serve(predictor, cfg: ScopeWatchConfig, sources: list[str], host: str = "127.0.0.1", port: int = 7860,
          auth: str | None = None, allowed_dir: Path | None = None, max_upload_mb: int = 500,
          weights: Path | None = None, start_metrics=None, read_only: bool = False) -> int:
    """Serve until Ctrl-C with `sources` started (each a tile; the first is the one shown).
    `start_metrics(sessions)`: starts the metrics endpoint on the running feeds (`sessions()`)."""
    credentials = check_access(host, auth)
    app, hub = build_app(predictor, cfg, sources[0] if sources else "", allowed_dir, weights=weights, read_only=read_only)
    metrics = start_metrics(lambda: list(hub.running().values())) if start_metrics else None
    for uri in sources:
        try:
            hub.start(uri)
        except SourceError as e:
            hub.stop_all()
            raise ServeError(str(e)) from None
    app.queue(default_concurrency_limit=4)
    _, url, _ = app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                           auth=credentials, inbrowser=False, max_file_size=f"{max_upload_mb}mb", quiet=True,
                           css=(STATIC / "dashboard.css").read_text(), js=(STATIC / "dashboard.js").read_text())
    print(f"ScopeWatch dashboard: {url}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop_all()
        app.close()
        if metrics is not None:
            metrics.shutdown()
    return 0
