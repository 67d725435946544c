import os
import pickle

import pytest

from model.tasks import DEFAULT_TASKS
from training.labels import (LabelError, load_plain_pickle, parse_lvq_label, read_labels_csv, read_lvq,
                             read_seed_pickles)


def test_generic_csv(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("file,noise,smoke,uneven_illumination,defocus_blur,motion_blur,quality\n"
                 "a.mp4,0,2,0,0,1,71.5\nb.mp4,0,0,0,0,0,\n")
    a, b = read_labels_csv(p)
    assert a.path == tmp_path / "a.mp4" and a.levels["smoke"] == 2 and a.levels["motion_blur"] == 1
    assert a.quality == 71.5 and b.quality is None and not b.presence("noise")
    p.write_text("file,noise\na.mp4,1\n")
    with pytest.raises(LabelError, match="missing column"):
        read_labels_csv(p)
    p.write_text("file,noise,smoke,uneven_illumination,defocus_blur,motion_blur\na.mp4,7,0,0,0,0\n")
    with pytest.raises(LabelError, match="0..4"):
        read_labels_csv(p)


def test_lvq_multilabel_strings(tmp_path):
    assert parse_lvq_label("2,5") == {"noise": 0, "smoke": None, "uneven_illumination": 0,
                                      "defocus_blur": 0, "motion_blur": None}
    assert all(v == 0 for v in parse_lvq_label("").values())
    assert parse_lvq_label("1;3")["uneven_illumination"] is None
    with pytest.raises(LabelError, match="codes are 1..5"):
        parse_lvq_label("2,7")
    p = tmp_path / "lvq.csv"
    p.write_text('video,labels\nv1.avi,"1,2,3"\nv2.avi,4\n')
    v1, v2 = read_lvq(p)
    assert {t for t in DEFAULT_TASKS if v1.presence(t)} == {"noise", "smoke", "uneven_illumination"}
    assert {t for t in DEFAULT_TASKS if v2.presence(t)} == {"defocus_blur"}


def test_seed_pickles_with_partition(tmp_path):
    tasks = ("noise", "defocus_blur")
    with open(tmp_path / "noise_kadid.pickle", "wb") as f:
        pickle.dump({"I01_01_1.png": 1, "I02_03_2.png": 0}, f)
    with open(tmp_path / "defocus_blur_kadid.pickle", "wb") as f:
        pickle.dump({"I01_01_1.png": 0, "I02_03_2.png": 1}, f)
    with open(tmp_path / "partition_kadid.pickle", "wb") as f:
        pickle.dump({"complete": ["I01_01_1.png", "I02_03_2.png"], "train": ["I01_01_1.png"], "test": ["I02_03_2.png"]}, f)
    a, b = read_seed_pickles(tmp_path, "kadid", tasks)
    assert a.presence("noise") and not a.presence("defocus_blur") and a.split == "train"
    assert b.presence("defocus_blur") and b.split == "test"


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/scopewatch_pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    p = tmp_path / "noise_x.pickle"
    p.write_bytes(pickle.dumps({"a.png": Exploit()}))
    with pytest.raises(LabelError, match="refusing to load"):
        load_plain_pickle(p)
    assert not os.path.exists("/tmp/scopewatch_pwned")
    p.write_bytes(pickle.dumps({"a.png": {1, 2}}))  # a set needs a global: refused too
    with pytest.raises(LabelError):
        load_plain_pickle(p)
    p.write_bytes(b"garbage")
    with pytest.raises(LabelError, match="not a readable pickle"):
        load_plain_pickle(p)
