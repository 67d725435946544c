"""A contact sheet: one frame through every generator of every distortion at every level, for eyes
to check the synthesis."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.tasks import NUM_LEVELS, level_to_severity
from training.distortions import DISTORTIONS, create_distortion
from training.quality import fr_quality


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(frame: np.ndarray, names=None, tile_width: int = 320, seed: int = 0) -> np.ndarray:
    """Rows: each generator of each distortion; columns: clean, then levels 1..4 with their FR quality."""
    names = list(names or DISTORTIONS.names())
    rng = np.random.default_rng(seed)
    h = round(frame.shape[0] * tile_width / frame.shape[1])
    small = cv2.resize(frame, (tile_width, h), interpolation=cv2.INTER_AREA)
    rows = []
    for name in names:
        for generator in DISTORTIONS.get(name).generators:
            d = create_distortion(name, (generator,))
            params = d.sample_params(rng)
            tiles = [_label(small, f"{name}/{generator}")]
            for lvl in range(1, NUM_LEVELS + 1):
                out = d.apply(frame, level_to_severity(lvl), params)
                tile = cv2.resize(out, (tile_width, h), interpolation=cv2.INTER_AREA)
                tiles.append(_label(tile, f"level {lvl}  Q={fr_quality(frame, out):.0f}"))
            rows.append(np.hstack(tiles))
    return np.vstack(rows)


def write_contact_sheet(frame: np.ndarray, out: Path, **kw) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(contact_sheet(frame, **kw), cv2.COLOR_RGB2BGR)):
        raise ValueError(f"{out}: could not write the image (use a .png or .jpg name)")
    return out
