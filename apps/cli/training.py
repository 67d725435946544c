"""`scopewatch synth`, `train`, `evaluate`, `calibrate` and `contact-sheet`: making data, training
and scoring models, and looking at the distortions."""
from __future__ import annotations

import argparse
from pathlib import Path

from apps.cli.common import (DEVICES, UsageError, add_clip_data_args, add_device_arg, add_weights_args, load_predictor,
                             positive, frame_size, task_list)


def generator_choice(text: str) -> dict[str, tuple[str, ...]]:
    from training.distortions import parse_generators
    try:
        return parse_generators(text)
    except (KeyError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e).strip("'\"")) from None


def add_generators_arg(p, help_text: str) -> None:
    from training.distortions import DISTORTIONS
    def listed(cls):
        return "+".join(g + (" (only when named)" if g in cls.optional else "") for g in cls.generators)
    every = "; ".join(f"{n}: {listed(DISTORTIONS.get(n))}" for n in DISTORTIONS.names())
    p.add_argument("--generators", type=generator_choice, default=None, metavar="NAME=GEN[+GEN],...",
                   help=f"{help_text}. Generators: {every}")


def _contents(specs: list[str], frame: tuple[int, int], seed: int):
    from training.content import open_content
    try:
        return [c for spec in specs for c in open_content(spec, frame, seed=seed)]
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--content: {e}") from None


def cmd_synth(args) -> int:
    from training.synth import synthesize
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} exists and is not a folder")
    contents = _contents(args.content or ["procedural"], args.size, args.seed)
    labels = synthesize(args.out, contents, args.clips, args.seconds, args.fps, args.tasks, args.seed,
                        progress=not args.quiet, generators=args.generators)
    print(f"wrote {args.clips} clips and {labels}")
    return 0


def cmd_contact_sheet(args) -> int:
    from training.content import read_image
    from training.contact_sheet import write_contact_sheet
    from training.scene import ProceduralScene
    if args.frame:
        try:
            frame = read_image(args.frame)
        except ValueError as e:
            raise UsageError(str(e)) from None
    else:
        frame = ProceduralScene(0, (640, 360)).frame_at(0)
    try:
        path = write_contact_sheet(frame, args.out, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {path}")
    return 0


def cmd_train(args) -> int:
    from dataclasses import replace
    from training.trainer import TrainConfig, train
    try:
        cfg = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"--config: {e}") from None
    overrides = {k: getattr(args, k) for k in ("model", "steps", "batch_size", "lr", "nss_weight", "directional_weight",
                                               "scale_ratios", "scene_shading", "severity_skew", "ema_decay", "workers",
                                               "device", "precision", "compile", "seed", "val_every")
                 if getattr(args, k) is not None}
    if args.out is not None:
        overrides["out"] = str(args.out)
    if args.content:
        overrides["train_content"] = tuple(args.content)
    if args.tasks is not None:
        overrides["tasks"] = args.tasks
    if args.generators is not None:
        overrides["generators"] = {name: list(gens) for name, gens in args.generators.items()}
    cfg = replace(cfg, **overrides)
    from model.factory import MODELS
    if cfg.model not in MODELS:
        raise UsageError(MODELS.unknown_message(cfg.model))
    try:
        best = train(cfg, resume=args.resume, progress=not args.quiet, stop_at=args.stop_at)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"best checkpoint: {best}")
    return 0


def cmd_evaluate(args) -> int:
    from training.evaluate import evaluate, markdown, write_report
    from training.labels import LabelError
    if not args.data.exists():
        raise UsageError(f"{args.data}: no such folder")
    predictor = load_predictor(args.weights, args.device, args.precision)
    try:
        report = evaluate(predictor, args.data, args.frames_per_clip, progress=not args.quiet)
    except (LabelError, ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    out = args.out or (args.data if args.data.is_dir() else args.data.parent) / "evaluation"
    j, m = write_report(report, out)
    print(markdown(report))
    print(f"wrote {j} and {m}")
    return 0


def cmd_calibrate(args) -> int:
    from model import CheckpointError
    from training.calibrate import calibrate
    from training.labels import LabelError
    if not args.data.exists():
        raise UsageError(f"{args.data}: no such folder")
    try:
        record = calibrate(args.weights, args.data, args.out, args.frames_per_clip, progress=not args.quiet)
    except (CheckpointError, LabelError, ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    print(f"decision layer fitted on {record['clips']} clips of {args.data} (folded into the presence head; "
          "the checkpoint decides at 0.5):")
    print(f"  {'distortion':<20} {'own logit x':>11} {'directional x':>13} {'shift':>6}")
    for j, task in enumerate(record["tasks"]):
        print(f"  {task:<20} {record['presence_mix'][j][j]:>11.2f} {record['directional_mix'][j][j]:>13.2f} "
              f"{record['shift'][j]:>6.2f}")
    before, after = record["before"], record["after"]
    print(f"on those clips: micro-F1 {before['micro_f1']:.3f} -> {after['micro_f1']:.3f}, "
          f"exact match {before['exact_match']:.3f} -> {after['exact_match']:.3f}")
    print(f"wrote {args.out}")
    return 0


def cmd_average(args) -> int:
    from model import CheckpointError, load_checkpoint, save_checkpoint
    from model.ensemble import Average
    from training.operating import unfold
    if len(args.weights) < 2:
        raise UsageError("name at least two checkpoints to average")
    models, taken_out = [], []
    for w in args.weights:
        try:
            model = load_checkpoint(w)
        except (CheckpointError, OSError) as e:
            raise UsageError(str(e)) from None
        if unfold(model):
            taken_out.append(str(w))
        models.append(model)
    try:
        avg = Average.of(models)
    except ValueError as e:
        raise UsageError(f"cannot average these: {e}") from None
    members = [{"weights": str(w), "sha256": m.checkpoint_meta["sha256"]} for w, m in zip(args.weights, models)]
    save_checkpoint(avg, args.out, training={"average_of": members})
    for w in taken_out:
        print(f"{w}: its operating points were taken back out (fit the average's own with operating-points)")
    print(f"wrote {args.out}: the average of {len(models)} networks")
    return 0


def register(sub) -> None:
    p = sub.add_parser("synth", help="synthesise distorted training/test clips with labels",
                       description="Write H.264 clips of clean content distorted singly and in combination "
                                   "(LVQ-style: 5 distortions x 4 levels) and DIR/labels.csv with one row per "
                                   "clip: file, one 0..4 level column per distortion, mean FR quality (0..100).")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--clips", type=positive(int), default=40, help="number of clips (default 40)")
    p.add_argument("--seconds", type=positive(float), default=4.0, help="length of each clip (default 4)")
    p.add_argument("--fps", type=positive(int), default=25, help="frame rate (default 25)")
    p.add_argument("--size", type=frame_size, default=(640, 360), help="frame size WxH (default 640x360)")
    p.add_argument("--content", action="append",
                   help="clean content, repeatable: 'procedural[:N]' or 'procedural:A-B' (built-in "
                        "generator, default), a folder of images/videos ('folder[a:b]' for a slice of its "
                        "sorted files), or one file ('video.mp4@s:e' for seconds s..e)")
    p.add_argument("--tasks", type=task_list, default=None,
                   help="comma-separated distortions to synthesise (default: the five surgical ones)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clips)")
    add_generators_arg(p, "draw each named distortion from these generators only (default: all but those drawn "
                          "only when named)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_synth)

    p = sub.add_parser("train", help="train the multi-task model on synthesised data",
                       description="Train on distortions synthesised on the fly from clean content; validate "
                                   "on content training never sees; keep the best checkpoint (best.pt) and a "
                                   "resumable last.pt in --out. Defaults: training.trainer.TrainConfig.")
    p.add_argument("--config", type=Path, help="JSON file of TrainConfig settings (flags override it)")
    p.add_argument("--out", type=Path, help="run folder (default runs/default)")
    p.add_argument("--content", action="append",
                   help="training content spec (repeatable; replaces the default, 'real:train' (the screened real "
                        "train split, training/surgical.py) and 'procedural:0-16')")
    p.add_argument("--model", help="architecture (see model.factory.list_models)")
    p.add_argument("--tasks", type=task_list, default=None, help="comma-separated tasks (heads)")
    p.add_argument("--steps", type=positive(int), help="optimizer steps")
    p.add_argument("--batch-size", type=positive(int), help="samples per step")
    p.add_argument("--lr", type=positive(float), help="peak learning rate")
    p.add_argument("--nss-weight", type=float, help="weight of the NSS auxiliary loss (0 = no auxiliary task)")
    p.add_argument("--directional-weight", type=float,
                   help="weight of the presence loss on the directional-energy pathway alone (0 = none)")
    p.add_argument("--no-scale-ratios", dest="scale_ratios", action="store_false", default=None,
                   help="directional energies without their fine/coarse ratios (as older models were trained)")
    p.add_argument("--scene-shading", type=float,
                   help="share of clean training frames shaded by the scene's own relief, labelled clean (0 = none)")
    p.add_argument("--severity-skew", type=float,
                   help="exponent of the training severities' distribution: 1 uniform, above 1 more faint distortions")
    p.add_argument("--ema-decay", type=float, help="decay of the weight average that is validated and saved (0 = raw weights)")
    p.add_argument("--workers", type=int, help="data-synthesis worker processes")
    p.add_argument("--device", choices=DEVICES, help="where the model trains (default auto: CUDA when present)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="arithmetic of the training steps (default auto: bfloat16 mixed precision where the "
                        "CPU or GPU computes it natively, else float32)")
    p.add_argument("--no-compile", dest="compile", action="store_false", default=None,
                   help="train eager instead of through torch.compile (compiling takes ~40 s once; here it "
                        "made steps 19%% faster in float32, 32%% in bfloat16)")
    p.add_argument("--val-every", type=positive(int), help="steps between validations")
    p.add_argument("--seed", type=int, help="random seed")
    add_generators_arg(p, "train each named distortion on these generators only, e.g. to leave one out "
                          "(default: all but those drawn only when named)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--stop-at", type=positive(int), metavar="STEP",
                   help="stop after this step (validated and saved; the learning-rate schedule stays that of "
                        "--steps), e.g. to compare starts early and --resume the one to finish")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("average", help="one checkpoint that averages several networks' outputs",
                       description="Write one checkpoint whose presence probabilities, severities, quality and NSS "
                                   "features are the means of the named networks' (same tasks and input): e.g. the "
                                   "seeds of one recipe, to see whether averaging away their spread helps. Operating "
                                   "points folded into a network are taken back out first; fit the average's own "
                                   "with `scopewatch operating-points`. It costs one network's time per member.")
    p.add_argument("weights", type=Path, nargs="+", help="the checkpoints to average (two or more)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.set_defaults(run=cmd_average)

    p = sub.add_parser("evaluate", help="score a checkpoint on a labelled clip folder",
                       description="Analyse every clip of DATA (a `scopewatch synth` folder or an LVQ-style "
                                   "folder) and report the ICIP 2020 metrics (micro-F1, exact match), "
                                   "per-distortion precision/recall/F1, severity accuracy, quality SROCC/PLCC "
                                   "and throughput, as JSON and Markdown.")
    p.add_argument("data", type=Path, help="folder with labels.csv (or an LVQ labels CSV) and its clips")
    add_weights_args(p)
    add_device_arg(p, precision="float32")
    p.add_argument("--out", type=Path, help="report folder (default DATA/evaluation)")
    add_clip_data_args(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("calibrate", help="fit the presence decisions' last layer on validation clips",
                       description="Analyse every clip of DATA (a `scopewatch synth` folder made from validation "
                                   "content, never test content), fit a decision layer over the presence logits "
                                   "and the directional pathway's logits (mixing across distortions, with a shift "
                                   "each: faint distortions are lifted over 0.5) to the clips' labels, fold it into "
                                   "the presence head so the checkpoint decides at 0.5, and write the calibrated "
                                   "checkpoint to --out. The printed table gives each distortion's own weights "
                                   "and shift.")
    p.add_argument("data", type=Path, help="folder with labels.csv and its clips (validation content)")
    add_weights_args(p, required=True)
    p.add_argument("--out", type=Path, required=True, help="calibrated checkpoint to write")
    add_clip_data_args(p)
    p.set_defaults(run=cmd_calibrate)

    p = sub.add_parser("contact-sheet", help="one frame at every distortion and level, as an image",
                       description="Render FRAME (default: a procedural scene) with every distortion at "
                                   "levels 1..4 into one PNG, each tile labelled with its FR quality.")
    p.add_argument("frame", nargs="?", type=Path, help="an image file (PNG/JPEG)")
    p.add_argument("--out", type=Path, default=Path("out/contact_sheet.png"), help="output image")
    p.add_argument("--seed", type=int, default=0, help="random seed for the distortions' choices")
    p.set_defaults(run=cmd_contact_sheet)
