"""Archive analysis: many recordings, each cut into time chunks analysed independently (as Ray
tasks across a cluster, or one after another here), then stitched back in order into exactly the
files the local `analyze` writes, plus one summary row per video.

A chunk task decodes a short lead-in before its start, so its first frame is compared with the
frame before it as in one pass, and returns its rows (`FrameResult`s) with each analysed frame's
`Picture`. The driver replays the stitched rows through one `EventDetector`, so the events are those
a single pass gives; their thumbnails are decoded afresh at each event's worst frame. A video's
files appear (atomically) only once it is complete, so a rerun skips what is done; a video that
cannot be read fails alone, with its error in the summary.
"""
from __future__ import annotations

import csv
import functools
import itertools
import json
import logging
import math
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from model.predict import Predictor, load_predictor
from model.preprocess import analysis_size
from monitor.config import ScopeWatchConfig
from monitor.inference import InferenceWorker
from monitor.outputs.events import EventDetector, Picture, PictureMeter, thumbnail
from monitor.outputs.export import CsvTimelineWriter, EventsJsonWriter, made_by
from monitor.outputs.naming import output_paths
from monitor.outputs.timeline import Timeline
from monitor.outputs.webhook import WebhookSender
from monitor.pipeline import Monitor
from monitor.records import FrameResult
from monitor.sources import FileSource, SourceError, frame_at

log = logging.getLogger("scopewatch.archive")

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".ts", ".m4v", ".webm", ".mpg", ".mpeg", ".mxf")
LEAD_IN_S = 1.0  # decoded before a chunk's start: its first frame needs the one before
SUMMARY = "archive_summary.csv"


class ArchiveError(Exception):
    """A problem with the request itself (no videos, clashing names): one line for the user."""


@dataclass(frozen=True)
class Chunk:
    video: str
    index: int
    start_s: float
    end_s: float | None  # None: to the end of the file


@dataclass
class ChunkResult:
    chunk: Chunk
    rows: list[tuple[FrameResult, Picture | None]] = field(default_factory=list)
    error: str | None = None


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for video files; sorted, no duplicates."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.exists():
            found.append(p)
        else:
            raise ArchiveError(f"{p}: no such file or folder")
    videos = list(dict.fromkeys(f.resolve() for f in found))
    if not videos:
        raise ArchiveError("no video files found")
    names = [v.name for v in videos]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ArchiveError(f"several videos are named {clash[0]}: their outputs would collide in one folder")
    return videos


def plan(video: Path, chunk_s: float) -> list[Chunk]:
    """Chunks of `chunk_s` seconds (the last runs to the end of the file). Raises SourceError."""
    source = FileSource(video)
    source.open()
    source.close()
    duration = source.info.duration_s
    n = max(1, math.ceil(duration / chunk_s)) if duration else 1
    return [Chunk(str(video), i, i * chunk_s, (i + 1) * chunk_s if i < n - 1 else None) for i in range(n)]


@functools.lru_cache(maxsize=2)
def _worker_predictor(weights: str | None, device: str, precision: str) -> Predictor:
    return load_predictor(weights, device, precision)  # once per Ray worker process, reused by its tasks


def _chunk_task(chunk: Chunk, cfg: ScopeWatchConfig, weights: str | None, device: str) -> ChunkResult:
    """The Ray task: the model comes from the checkpoint path, loaded in the worker."""
    return analyse_chunk(chunk, cfg, _worker_predictor(weights, device, cfg.model.precision))


def analyse_chunk(chunk: Chunk, cfg: ScopeWatchConfig, predictor: Predictor,
                  worker: InferenceWorker | None = None) -> ChunkResult:
    """One chunk's rows and pictures (the lead-in's are dropped). `worker`: an inference worker
    shared with other chunks decoded at the same time (None: its own)."""
    lead = min(LEAD_IN_S, chunk.start_s)
    source = FileSource(chunk.video, start_s=chunk.start_s - lead, end_s=chunk.end_s)
    result = ChunkResult(chunk)
    meter = PictureMeter()

    def sink(r: FrameResult, image) -> None:
        if r.time_s >= chunk.start_s - 1e-6:
            result.rows.append((r, meter(image) if image is not None else None))
        elif image is not None:
            meter(image)  # the lead-in only sets the picture to compare the first frame with

    monitor = Monitor(source, predictor, cfg, sinks=[sink], worker=worker)
    try:
        monitor.start()
    except SourceError as e:
        result.error = str(e)
        return result
    monitor.join()
    result.error = monitor.failed or (str(monitor.error) if monitor.error else None)
    return result


def analysis_frame_at(video: str, time_s: float, predictor: Predictor):
    """The analysis-size frame at `time_s`, as the monitor saw it (for an event's thumbnail)."""
    raw = frame_at(video, time_s)
    return None if raw is None else raw.to_rgb(analysis_size(raw.width, raw.height, predictor.input_cfg))


def write_video(video: str, parts: list[ChunkResult], out_dir: Path, cfg: ScopeWatchConfig,
                predictor: Predictor, webhook: WebhookSender | None = None) -> dict:
    """Stitch a video's chunk results into its CSV and events (as the local `analyze` writes them,
    posting each event to `webhook`) and return its summary row. The files are written under
    temporary names and renamed last."""
    paths = output_paths(video, out_dir)
    csv_path, events_path, summary_path = paths.csv, paths.events, paths.summary
    tasks, source_id = predictor.tasks, Path(video).name
    tmp_csv, tmp_events = csv_path.with_suffix(".csv.part"), events_path.with_suffix(".json.part")
    writer, events_out = CsvTimelineWriter(tmp_csv, tasks), EventsJsonWriter(tmp_events, source_id, tasks, made_by(predictor.name, cfg.model.weights))
    detector = EventDetector(tasks, cfg.events, source_id, cfg.decision)
    timeline = Timeline(tasks, cfg.decision, cfg.timeline.recent_s, cfg.timeline.archive_points)

    def publish(events):
        for e in events:
            if e.kind != "signal_lost":  # an outage has no picture of its own
                image = analysis_frame_at(video, e.worst_time_s, predictor)
                e.thumbnail_jpeg = thumbnail(image, cfg.events.thumbnail_width) if image is not None else None
            events_out.add(e)
            if webhook:
                webhook.send(e.to_dict())

    error = next((p.error for p in parts if p.error), None)
    for part in parts:
        for r, picture in part.rows:
            timeline(r)
            writer.write(r)
            publish(detector.update(r, picture=picture))
        if part.error:
            break  # what follows a failed chunk is not this video's continuous timeline
    publish(detector.flush())
    writer.close()
    tmp_events.replace(events_path)
    tmp_csv.replace(csv_path)
    tasks_summary, overall = timeline.summary(detector.events)
    row = {"video": str(video), "status": "failed" if error else "ok", "error": error or "",
           "duration_s": round(overall["duration_s"], 2), "frames": overall["frames"],
           "mean_quality": None if overall["mean_quality"] is None else round(overall["mean_quality"], 2),
           "min_quality": None if overall["min_quality"] is None else round(overall["min_quality"], 2)}
    for t in tasks_summary:
        row[f"{t.name}_percent"] = round(t.percent_present, 2)
        row[f"{t.name}_episodes"] = t.episodes
    tmp = summary_path.with_suffix(".json.part")
    tmp.write_text(json.dumps(row, indent=1))
    tmp.replace(summary_path)  # last: its presence means the video is complete
    return row


def failed_row(video: str, error: str) -> dict:
    return {"video": str(video), "status": "failed", "error": error}


def write_summary(rows: list[dict], path: Path) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_suffix(".csv.part")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: r["video"]))
    tmp.replace(path)
    return path


Executor = Callable[[list[Chunk]], Iterable[ChunkResult]]


def local_executor(cfg: ScopeWatchConfig, predictor: Predictor, at_once: int | None = None) -> Executor:
    """Chunks in this process, with its model: `at_once` decoded at a time (default: one more than
    the cores), one inference worker batching the frames of all of them. Decoding releases the
    GIL, and a decoder often waits (for the buffer, for its own threads): one chunk at a time
    leaves a core idle (benchmarks/archive.py). Results come back as chunks finish."""
    at_once = at_once or (os.cpu_count() or 1) + 1

    def run(chunks: list[Chunk]) -> Iterable[ChunkResult]:
        todo = iter(chunks)
        worker = InferenceWorker(predictor, cfg.buffer.batch_size, cfg.model.threads)
        try:
            with ThreadPoolExecutor(at_once, thread_name_prefix="chunk") as pool:
                pending = {pool.submit(analyse_chunk, c, cfg, predictor, worker) for c in itertools.islice(todo, at_once)}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        pending |= {pool.submit(analyse_chunk, c, cfg, predictor, worker) for c in itertools.islice(todo, 1)}
                        yield future.result()
        finally:
            worker.stop()

    return run


def ray_executor(address: str | None, cfg: ScopeWatchConfig, weights: str | None, device: str) -> Executor:
    """Chunks as Ray tasks: a local Ray instance when `address` is None, else the cluster there
    ("auto": the one running on this machine). A worker that dies mid-task is retried; results
    come back as they finish (the driver puts them in order)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, configure_logging=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    # A GPU serves several chunk tasks at once: the model is small; decoding is the task's bulk.
    task = ray.remote(num_cpus=1, num_gpus=0.25 if gpus else 0, max_retries=3)(_chunk_task)
    task_device = "cuda" if gpus else ("cpu" if device == "auto" else device)

    def run(chunks: list[Chunk]) -> Iterable[ChunkResult]:
        cfg_ref = ray.put(cfg)
        pending = {task.remote(c, cfg_ref, weights, task_device): c for c in chunks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            chunk = pending.pop(done[0])
            try:
                yield ray.get(done[0])
            except Exception as e:  # a task that failed for good (retries spent) fails its video
                yield ChunkResult(chunk, error=f"task failed: {str(e).splitlines()[0]}")

    return run


def analyse_archive(videos: list[Path], out_dir: Path, cfg: ScopeWatchConfig, predictor: Predictor,
                    executor: Executor, chunk_s: float = 300.0, progress=None) -> list[dict]:
    """Analyse `videos` into `out_dir`; videos already complete there are skipped. Returns the
    summary rows (also written to out_dir/archive_summary.csv)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, chunks = [], []
    for video in videos:
        summary = output_paths(video, out_dir).summary
        done = json.loads(summary.read_text()) if summary.exists() else None
        if done and done["status"] == "ok":
            log.info("%s: already complete, skipped", video)
            rows.append(done)
            continue
        try:
            chunks += plan(video, chunk_s)
        except SourceError as e:
            rows.append(failed_row(str(video), str(e)))
    by_video: dict[str, dict[int, ChunkResult]] = {}
    expected = {}
    for c in chunks:
        expected[c.video] = expected.get(c.video, 0) + 1
    if progress is not None:
        progress.reset(total=len(chunks))
    webhook = WebhookSender(cfg.output.webhook) if cfg.output.webhook else None
    try:
        for result in executor(chunks):
            parts = by_video.setdefault(result.chunk.video, {})
            parts[result.chunk.index] = result
            if progress is not None:
                progress.update(1)
            if len(parts) == expected[result.chunk.video]:  # all chunks in: stitch and write it now
                ordered = [parts[i] for i in range(len(parts))]
                rows.append(write_video(result.chunk.video, ordered, out_dir, cfg, predictor, webhook))
                del by_video[result.chunk.video]
    finally:
        if webhook:
            webhook.close()
    write_summary(rows, out_dir / SUMMARY)
    return rows
