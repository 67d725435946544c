"""Real encoded media for the tests: files written by PyAV and live streams published by PyAV."""
from __future__ import annotations

import csv
import http.server
import json
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from training.scene import ProceduralScene

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    """`scopewatch ARGS` as a user runs it: a new process from the repository root."""
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HookServer:
    """A webhook receiver on a free loopback port: the JSON bodies POSTed to it, in order; the first
    `fail_first` posts are answered 503 (to exercise retries)."""

    def __init__(self, fail_first: int = 0):
        self.received: list = []
        self.fail_first = fail_first
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.fail_first:
                    hook.fail_first -= 1
                    self.send_response(503)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        port = free_port()
        self.url = f"http://127.0.0.1:{port}/hook"
        self._server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


def frames(n: int, size=(320, 180), seed=1, fps=25):
    scene = ProceduralScene(seed, size)
    return [scene.frame_at(i / fps) for i in range(n)]


def write_video(path: Path, codec: str = "libx264", size=(320, 180), n: int = 25, fps: int = 25,
                times: list[float] | None = None, audio: bool = False, pix_fmt: str = "yuv420p",
                options: dict | None = None, container_options: dict | None = None) -> Path:
    """Encode `n` procedural frames; with `times`, frames get those presentation times (VFR)."""
    with av.open(str(path), "w", options=container_options or {}) as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = size[0], size[1], pix_fmt
        if times is not None:
            st.codec_context.time_base = Fraction(1, 1000)
        st.options = options or ({"preset": "ultrafast"} if codec in ("libx264", "libx265") else {})
        if codec == "libx265":
            st.options |= {"x265-params": "log-level=none"}
        ast = out.add_stream("aac", rate=48000) if audio else None
        for i, img in enumerate(frames(n, size)):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times is not None:
                f.pts, f.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for p in st.encode(f):
                out.mux(p)
            if ast is not None:
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, i * 1920
                for p in ast.encode(af):
                    out.mux(p)
        for p in st.encode():
            out.mux(p)
        if ast is not None:
            for p in ast.encode():
                out.mux(p)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        ast = out.add_stream("aac", rate=48000)
        for i in range(20):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 48000, i * 1024
            for p in ast.encode(af):
                out.mux(p)
        for p in ast.encode():
            out.mux(p)
    return path


def timeline_rows(path: Path) -> list[list[str]]:
    """A timeline CSV's rows, header first ([] while it does not exist yet)."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.reader(f))


def analysed(table: list[list[str]]) -> list[list[str]]:
    """The rows of analysed frames (a state row's probability cells are empty)."""
    return [r for r in table[1:] if len(r) > 3 and r[3]]


def listening(port: int) -> bool:
    """Whether a local TCP port is in LISTEN state, read from the kernel without connecting (a
    probe connection would be taken as the listen-once server's one client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _publish(url, fmt, seconds, fps, size, options, ready, speed=1.0):
    try:
        _serve(url, fmt, seconds, fps, size, options, ready, speed)
    except ConnectionError:  # the client went away (a reader stopped): a server just ends its stream
        pass


def _serve(url, fmt, seconds, fps, size, options, ready, speed):
    scene = ProceduralScene(5, size)
    ready.set()
    with av.open(url, "w", format=fmt, options=options) as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        st.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}
        start = time.time()
        for i in range(int(seconds * fps)):
            time.sleep(max(0.0, start + i / (fps * speed) - time.time()))
            f = av.VideoFrame.from_ndarray(scene.frame_at(i / fps), format="rgb24")
            f.pts = i
            for p in st.encode(f):
                out.mux(p)


class Publisher:
    """A stream server in its own process (as a real one would be): publishes procedural H.264 in
    real time to `url` (an MPEG-TS TCP server with ?listen=1, a UDP push, or an RTSP server).
    A separate process also matters because PyAV's listening open holds the GIL while it waits.
    `stop()` kills it, which is also how tests simulate a server dying mid-stream. `speed` 2 sends
    `seconds` of media in half the time (a source faster than real time)."""

    def __init__(self, url: str, fmt: str, seconds: float = 30.0, fps: int = 25, size=(320, 180), options=None,
                 speed: float = 1.0):
        ctx = multiprocessing.get_context("spawn")
        self.listen_port = int(url.split(":")[2].split("?")[0]) if url.startswith("tcp:") and "listen=1" in url else None
        self.ready = ctx.Event()
        self.process = ctx.Process(target=_publish, args=(url, fmt, seconds, fps, size, options or {}, self.ready, speed),
                                   daemon=True, name=f"publish:{url}")

    def start(self, settle_s: float = 0.5):
        """Start, and return once the server is (about to be) listening."""
        self.process.start()
        if not self.ready.wait(30):
            raise RuntimeError("publisher did not start")
        if self.listen_port:
            end = time.time() + 15
            while not listening(self.listen_port) and time.time() < end:
                time.sleep(0.05)
        else:
            time.sleep(settle_s)

    def stop(self):
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


class Relay:
    """A TCP relay in front of a live MPEG-TS server, to misbehave on cue: `mode` "pass" forwards the
    stream to the newest client, "hold" keeps the connection open and sends nothing (a stalled
    source), "garbage" sends random bytes in place of the stream. The upstream is read all along,
    as a real server goes on producing."""

    def __init__(self, upstream_port: int):
        self.upstream_port, self.port, self.mode = upstream_port, free_port(), "pass"
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._client: socket.socket | None = None
        self._stop = threading.Event()
        self._rng = np.random.default_rng(0)
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._accept, self._pump)]

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> "Relay":
        for t in self._threads:
            t.start()
        return self

    def _accept(self):
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            old, self._client = self._client, client
            if old is not None:
                old.close()

    def _pump(self):
        up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        while not self._stop.is_set():
            data = up.recv(65536)
            if not data:
                break
            client = self._client
            if client is None or self.mode == "hold":
                continue
            if self.mode == "garbage":
                data = self._rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
            try:
                client.sendall(data)
            except OSError:
                if self._client is client:
                    self._client = None
        up.close()

    def stop(self):
        self._stop.set()
        self._threads[0].join(5)  # the accepting thread, before its socket closes under it
        self._listener.close()
        if self._client is not None:
            self._client.close()
