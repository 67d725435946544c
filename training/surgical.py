"""The real laparoscopy the trainer may learn from: the `train` split of `../shared/data/surgical`,
screened, with what each source is and what was left out of it and why.

Only the train split is listed here (val is for thresholds and checkpoint choice, through
`scopewatch check-real val`; eval is only reported). Frames were screened by eye on a contact sheet
(and against the previous model's alarms, to find what to look at): frames that show smoke, blur or
haze are left out of the clean content, since everything there is labelled clean before it is
distorted. The Cholec80 clips were screened at 0.2 s steps: only their clear seconds are used (until
synth_v12 the whole clips were, cautery smoke and all, labelled clean).

The plainly smoky of those left-out frames and seconds are `TRAIN_DEGRADED`: real smoke, labelled
with what a person sees in it, which the trainer may mix in (`TrainConfig.real_degraded`). Frames a
person could call either way (OP2 images 01, 19 and 34, the wisp of `video02_100`) are in neither.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from training.content import Content, open_content

log = logging.getLogger("scopewatch.content")
SURGICAL = Path("../shared/data/surgical")
WIDESCREEN = 16 / 9


@dataclass(frozen=True)
class RealSource:
    spec: str  # open_content spec, relative to the surgical folder
    what: str
    aspect: float | None = None  # true width/height of files stored stretched
    exclude: tuple[str, ...] = ()  # file-name prefixes screened out
    why_excluded: str = ""
    present: str | None = None  # the distortion a person sees in it (None: clean content)

    def open(self, size: tuple[int, int], seed: int, root: Path = SURGICAL) -> list[Content]:
        return open_content(str(root / self.spec), size, seed=seed, aspect=self.aspect, exclude=self.exclude)


TRAIN_SOURCES = (
    RealSource("train_clean[0:16]", "Cholec80 video01, 16 of 20 still frames (4 kept for the synthetic test)"),
    RealSource("real_clean_video/cholec_endo_720p.mp4@0:8", "a 720p cholecystectomy, seconds 0-8 (8-10 validate)"),
    RealSource("train_more/endovis15_colorectal", "EndoVis 2015, 4 colorectal operations; OP4 a round field",
               exclude=("OP2_img_01", "OP2_img_04", "OP2_img_10", "OP2_img_19", "OP2_img_22", "OP2_img_25",
                        "OP2_img_28", "OP2_img_31", "OP2_img_34", "OP3_img_19"),
               why_excluded="hazy or smoky (most of OP2, one of OP3)"),
    RealSource("train_more/artnet_1080p", "Art-Net, a 1080p laparoscope with a round field (5 similar frames)"),
    RealSource("train_more/roboflow_informative/images", "web laparoscopy videos, black borders, redaction boxes",
               aspect=WIDESCREEN,
               exclude=("1036206_", "1035604_100", "1035604_119", "1035604_156", "1035606_899"),
               why_excluded="1036206_* are not surgery (news, people, slides); four frames are blurred"),
    *(RealSource(f"train_more/cholec80_clips/{clip}.mp4{window}", "Cholec80 videos 01/02, 5 s clips with real camera "
                 "and tool motion (256 px high: rendered at their own size, never upscaled)", aspect=WIDESCREEN,
                 why_excluded=why) for clip, window, why in (
        ("video01_000", "", ""),
        ("video01_070", "", ""),
        ("video01_150", "@0:2.7", "the camera's fast move from 2.8 s blurs it"),
        ("video01_230", "@1:3.4", "cautery smoke at 0.2-1 s and 3.6-4.2 s"),
        ("video02_100", "@1.4:", "a faint wisp of smoke at 0.6-1.2 s"),
        ("video02_101", "@2.2:", "cautery smoke at 1.2-2 s"))),
)
# Real smoke of the train split: the smoky frames and seconds screened out of TRAIN_SOURCES above.
_SMOKY_ENDOVIS = ("OP2_img_04", "OP2_img_10", "OP2_img_22", "OP2_img_25", "OP2_img_28", "OP2_img_31", "OP3_img_19")
TRAIN_DEGRADED = (
    *(RealSource(f"train_more/endovis15_colorectal/{name}_raw.png", "EndoVis 2015: a haze of smoke over the field",
                 present="smoke") for name in _SMOKY_ENDOVIS),
    *(RealSource(f"train_more/cholec80_clips/{clip}.mp4@{window}", what, aspect=WIDESCREEN, present="smoke")
      for clip, window, what in (
        ("video01_230", "0.2:1", "Cholec80: cautery smoke rising from the hook"),
        ("video01_230", "3.6:4.2", "Cholec80: a milky cloud of cautery smoke"),
        ("video02_101", "1.2:2", "Cholec80: cautery smoke beside the hook"))),
)
# The trainer's synthetic validation draws on other real content than its training: another time
# range of the 720p video, and two Cholec80 clips of video02 that training never sees.
VAL_SOURCES = (
    RealSource("real_clean_video/cholec_endo_720p.mp4@8:", "the 720p cholecystectomy, seconds 8-10"),
    RealSource("train_more/cholec80_clips/video02_130.mp4@3:", "a Cholec80 clip of video02", aspect=WIDESCREEN,
               why_excluded="cautery smoke at 0.8-1.8 s, a wisp at 2.6 s"),
    RealSource("train_more/cholec80_clips/video02_131.mp4@2.6:", "a Cholec80 clip of video02", aspect=WIDESCREEN,
               why_excluded="cautery smoke at 1-2.2 s"),
)


def open_sources(sources, size: tuple[int, int], seed: int, root: Path = SURGICAL) -> list[Content]:
    """Every source found (each missing one is logged and skipped: a machine without the data)."""
    out: list[Content] = []
    for source in sources:
        path = root / source.spec.split("[")[0].split("@")[0]
        if not path.exists():
            log.warning("real content %s not found: skipped", path)
            continue
        out += source.open(size, seed, root)
    return out


def open_degraded(size: tuple[int, int], seed: int, root: Path = SURGICAL) -> list[tuple[RealSource, Content]]:
    """Every `TRAIN_DEGRADED` source found, each content with the source that says what is in it."""
    return [(source, c) for source in TRAIN_DEGRADED for c in open_sources([source], size, seed, root)]


def main() -> None:
    """`python -m training.surgical`: each training source's count and share of the samples (the
    trainer draws a source uniformly), the table of docs/MODEL.md, and the real degraded footage's."""
    from training.trainer import TrainConfig, load_contents

    cfg = TrainConfig()
    rows = [(s.spec, open_sources([s], (640, 360), cfg.seed)) for s in TRAIN_SOURCES]
    rows += [(spec, load_contents([spec], cfg.seed)) for spec in cfg.train_content if not spec.startswith("real:")]
    total = sum(len(c) for _, c in rows)
    for spec, contents in rows:
        frames = sum(len(getattr(c, "frames", [None])) for c in contents)
        print(f"{spec:<50} {len(contents):>4} sources {frames:>5} frames {len(contents) / total:6.1%} of samples")
    print(f"{'total':<50} {total:>4} sources; real {1 - sum(len(c) for s, c in rows[len(TRAIN_SOURCES):]) / total:.1%}")
    degraded = open_degraded((640, 360), cfg.seed)
    print(f"real degraded footage, {cfg.real_degraded:.0%} of samples (real_degraded), each source drawn uniformly:")
    for source, _ in degraded:
        print(f"  {source.spec:<48} {source.present:<6} {cfg.real_degraded / len(degraded):6.1%} of samples")


if __name__ == "__main__":
    main()
