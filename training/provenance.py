"""What trained a checkpoint, and whether two checkpoints are the same network (issue 18).

A run of the recipe is deterministic on one kind of machine: two runs of `make weights` on it give
the same weights bit for bit. On another kind (another CPU, bfloat16 kernels above all) the same
recipe rounds differently, the runs part within a few steps, and what comes out is another draw of
the recipe, as another seed would be (docs/MODEL.md, "Reproduction"). So the trainer records the
machines a run's steps ran on in each checkpoint's `extra["machines"]`, and the digest of its
weights (`sha256`, model.checkpoint) tells whether two files hold the same network. Each checkpoint
also keeps its run's trajectory, `extra["trajectory"]`: the digest of the weight average at every
validation step so far. So a rebuild is checked against a shipped checkpoint after the first 200
steps (`scopewatch train --stop-at 200`, a few minutes), not after the whole run.

    python -m training.provenance CHECKPOINT [CHECKPOINT ...]

Prints each checkpoint's digest, step and machines, which of them hold the same weights, and how
each stands against the runs the others record: the same through some step, or parted at one.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, read_checkpoint


def processor_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name as the kernel reports it (`cpuinfo`: the text of /proc/cpuinfo, read when
    None; platform.processor() is often empty on Linux), with its family and model numbers: a
    virtual machine may name two generations alike (two "AMD EPYC" of this workplace, one with
    bfloat16 arithmetic and family 25 model 1 without), and a run trains in bfloat16 only where the
    CPU has it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    first = (line.split(":", 1) for line in cpuinfo.split("\n\n")[0].splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in first}
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def processor(device: torch.device) -> str:
    """What computes on `device`: the GPU's name, or the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else processor_name()


def machine_record(device: torch.device, dtype: torch.dtype | None, compiled: bool) -> dict:
    """What a run's arithmetic depends on beside its recipe."""
    return {"processor": processor(device), "device": device.type, "precision": "bfloat16" if dtype else "float32", "compiled": compiled,
            "threads": torch.get_num_threads(), "torch": str(torch.__version__)}


def of_checkpoint(ckpt: dict) -> dict:
    """A checkpoint's weight digest, the machines its training ran on and its run's trajectory
    ({step: digest of the weight average}; both empty where not recorded, as before the trainer
    kept them), from `read_checkpoint`'s dict."""
    extra = ckpt.get("extra", {})
    return {"sha256": ckpt.get("sha256"), "machines": list(extra.get("machines", [])),
            "trajectory": {int(k): v for k, v in extra.get("trajectory", {}).items()}}


def against(info: dict, step: int | None, other: dict) -> str | None:
    """How a checkpoint (`of_checkpoint`'s dict, at `step`) stands against the run `other`
    records: the same through the last step both record, or parted at the first where they differ;
    None when they share no step."""
    mine = dict(info["trajectory"])
    if step is not None:
        mine.setdefault(step, info["sha256"])
    common = sorted(set(mine) & set(other["trajectory"]))
    if not common:
        return None
    parted = next((s for s in common if mine[s] != other["trajectory"][s]), None)
    return f"parted at step {parted}" if parted is not None else f"the same through step {common[-1]}"


def machine_text(machines: list[dict]) -> str:
    if not machines:
        return "not recorded"
    return "; then ".join(f"{m['processor']} ({m['device']}, {m['precision']}{', compiled' if m['compiled'] else ''}, "
                          f"{m['threads']} thread(s), torch {m['torch']})" for m in machines)


def table(paths: list[Path]) -> str:
    rows = []
    for path in paths:
        ckpt = read_checkpoint(path)
        rows.append((path, of_checkpoint(ckpt), ckpt.get("metrics", {}).get("step")))
    first = {}
    for path, info, _ in rows:
        first.setdefault(info["sha256"], path)
    lines = ["| checkpoint | weights | step | trained on | same weights as | against the run of |",
             "|---|---|---|---|---|---|"]
    for path, info, step in rows:
        same = first[info["sha256"]]
        runs = [f"`{other}`: {verdict}" for other, theirs, _ in rows if other != path
                for verdict in [against(info, step, theirs)] if verdict]
        lines.append(f"| `{path}` | `{info['sha256'][:12]}` | {step if step is not None else '—'} | "
                     f"{machine_text(info['machines'])} | {'' if same == path else f'`{same}`'} | {'; '.join(runs)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.provenance", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT")
    args = ap.parse_args(argv)
    try:
        print(table(args.checkpoints))
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
