"""A generator of malformed and unusual inputs for `scopewatch analyze` (issue 21): truncations of
every container at many offsets, bit flips, wrong extensions, empty and 1-byte files, streams that
are not video, degenerate and unusual picture formats, images, folders and awkward names. Each case
is a path to hand to `analyze`; what must happen is the same for all (tests/test_bad_inputs.py):
rows written and exit 0, or one clear line and a non-zero exit, never a traceback or a hang.

    python tests/bad_inputs.py FOLDER     # writes the cases there and lists them
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from training.scene import ProceduralScene

from helpers import write_audio_only

FPS = 25


@dataclass(frozen=True)
class Case:
    name: str
    path: Path


def frames(n: int, size: tuple[int, int], seed: int = 3) -> list[np.ndarray]:
    import cv2
    w, h = size
    scene = ProceduralScene(seed, (max(w, 64), max(h, 64)))  # the scene needs room; tiny sizes are scaled down
    return [cv2.resize(scene.frame_at(i / FPS), (w, h), interpolation=cv2.INTER_AREA) if min(w, h) < 64
            else scene.frame_at(i / FPS) for i in range(n)]


def encode(path: Path, codec: str = "libx264", size=(320, 180), n: int = 30, pix_fmt: str = "yuv420p",
           fmt: str | None = None, options: dict | None = None, container_options: dict | None = None,
           times: list[float] | None = None, metadata: dict | None = None, source_format: str = "rgb24") -> Path:
    """`n` frames of a moving scene encoded with `codec` into `path` (container from its suffix or `fmt`)."""
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        st = out.add_stream(codec, rate=FPS)
        st.width, st.height, st.pix_fmt = size[0], size[1], pix_fmt
        st.options = options if options is not None else ({"preset": "ultrafast"} if codec == "libx264" else {})
        if metadata:
            st.metadata.update(metadata)
        if times is not None:
            st.codec_context.time_base = Fraction(1, 1000)
        for i, img in enumerate(frames(n, size)):
            if source_format == "rgba":
                img = np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])
            elif source_format == "gray":
                img = img.mean(axis=2).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(img, format=source_format)
            if times is not None:
                f.pts, f.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for p in st.encode(f):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


def truncated(src: Path, dst: Path, fraction: float | None = None, size: int | None = None) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: size if size is not None else int(len(data) * fraction)])
    return dst


def flipped(src: Path, dst: Path, flips: int, seed: int) -> Path:
    """`flips` random bits flipped past the first 5% of the file (the headers stay readable)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(len(data) // 20, len(data), flips):
        data[pos] ^= 1 << int(rng.integers(0, 8))
    dst.write_bytes(bytes(data))
    return dst


def make_cases(folder: Path) -> list[Case]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "sources"
    src.mkdir(exist_ok=True)
    cases: list[Case] = []

    def add(name: str, path: Path) -> None:
        cases.append(Case(name, path))

    # Whole files of each container, then cut at many offsets.
    mp4 = encode(src / "index_at_end.mp4")
    faststart = encode(src / "faststart.mp4", container_options={"movflags": "faststart"})
    mkv = encode(src / "clip.mkv")
    ts = encode(src / "clip.ts")
    avi = encode(src / "clip.avi", codec="mpeg4")
    for name, whole, cuts in (("mp4", mp4, (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)),
                              ("faststart_mp4", faststart, (0.02, 0.1, 0.5, 0.9, 0.99)),
                              ("mkv", mkv, (0.02, 0.1, 0.5, 0.9, 0.99)),
                              ("ts", ts, (0.02, 0.1, 0.5, 0.9, 0.99)),
                              ("avi", avi, (0.05, 0.5, 0.95))):
        for cut in cuts:
            add(f"{name} cut at {cut:.0%}", truncated(whole, folder / f"{name}_cut{round(cut * 100):02d}{whole.suffix}", cut))
    add("mp4 cut after 100 bytes", truncated(mp4, folder / "mp4_cut100b.mp4", size=100))
    add("mp4 cut after 1000 bytes", truncated(mp4, folder / "mp4_cut1000b.mp4", size=1000))
    # Bit flips in the bitstream.
    for name, whole in (("mp4", mp4), ("mkv", mkv), ("ts", ts)):
        for flips in (10, 1000):
            add(f"{name} with {flips} bits flipped", flipped(whole, folder / f"{name}_flip{flips}{whole.suffix}", flips, flips))
    # Not what the name says, or nothing at all.
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    add("text named .mp4", folder / "text.mp4")
    png = folder / "still.png"
    encode(png, codec="png", n=1, fmt="image2", pix_fmt="rgb24", options={})
    (folder / "still_named.mp4").write_bytes(png.read_bytes())
    add("PNG named .mp4", folder / "still_named.mp4")
    (folder / "mp4_named.avi").write_bytes(mp4.read_bytes())
    add("MP4 named .avi", folder / "mp4_named.avi")
    (folder / "empty.mp4").write_bytes(b"")
    add("empty file", folder / "empty.mp4")
    (folder / "one_byte.mp4").write_bytes(b"\x00")
    add("1-byte file", folder / "one_byte.mp4")
    (folder / "random.mkv").write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, np.uint8).tobytes())
    add("random bytes named .mkv", folder / "random.mkv")
    # Streams that are not video, or video without pictures.
    add("audio only", write_audio_only(folder / "audio_only.m4a"))
    (folder / "subtitles_only.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nhello\n\n")
    add("subtitles only", folder / "subtitles_only.srt")
    with av.open(str(folder / "no_frames.mp4"), "w") as out:  # a video track with no frame in it
        st = out.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = 320, 180, "yuv420p"
        out.start_encoding()  # the header, and nothing after it
    add("zero-duration (a video stream without frames)", folder / "no_frames.mp4")
    # Degenerate and unusual pictures.
    add("1x1 video", encode(folder / "one_pixel.nut", codec="rawvideo", size=(1, 1), n=5, pix_fmt="rgb24", options={}))
    add("2x2 video", encode(folder / "two_pixels.mp4", size=(2, 2), n=5))
    add("8K video", encode(folder / "eight_k.mp4", size=(7680, 4320), n=2))
    add("odd size 321x241", encode(folder / "odd_size.mkv", size=(321, 241), pix_fmt="yuv444p", n=10))
    add("yuv444p", encode(folder / "yuv444.mp4", pix_fmt="yuv444p", n=10))
    add("gray", encode(folder / "gray.mkv", codec="ffv1", pix_fmt="gray", n=10, source_format="gray", options={}))
    add("10-bit", encode(folder / "ten_bit.mkv", codec="ffv1", pix_fmt="yuv420p10le", n=10, options={}))
    add("alpha channel", encode(folder / "alpha.mov", codec="png", pix_fmt="rgba", n=10, source_format="rgba", options={}))
    add("variable frame rate", encode(folder / "vfr.mp4", n=20, times=[0.0, 0.04, 0.5, 0.52, 0.6, 1.5, 1.54, 1.58, 1.6, 2.5,
                                                                      2.52, 2.6, 3.0, 3.04, 3.08, 3.5, 3.9, 3.94, 3.98, 4.5]))
    add("rotation metadata", encode(folder / "rotated.mp4", n=10, metadata={"rotate": "90"}))
    add("interlaced", encode(folder / "interlaced.mp4", n=10, options={"preset": "ultrafast", "x264-params": "interlaced=1"}))
    add("MJPEG", encode(folder / "mjpeg.avi", codec="mjpeg", pix_fmt="yuvj420p", n=10, options={}))
    add("portrait 180x320", encode(folder / "portrait.mp4", size=(180, 320), n=10))
    # Images, folders and names.
    add("PNG image", png)
    jpg = encode(folder / "still.jpg", codec="mjpeg", n=1, fmt="image2", pix_fmt="yuvj420p", options={})
    add("JPEG image", jpg)
    mixed = folder / "mixed_folder"
    mixed.mkdir(exist_ok=True)
    encode(mixed / "clip.mp4", n=10)
    (mixed / "notes.txt").write_text("not a video")
    add("a folder with a video and a text file", mixed)
    add("a name with spaces and non-ASCII", encode(folder / "clip été n°2 (copie).mp4", n=10))
    return cases


if __name__ == "__main__":
    for case in make_cases(Path(sys.argv[1])):
        print(f"{case.name}: {case.path}")
