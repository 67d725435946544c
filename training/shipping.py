"""The shipping rule: when a checkpoint may replace the shipped one (issue 18).

A checkpoint ships only when, together:
* on the `val` split's real clean footage (pooled over its clean items): at most 5% of frames
  with any alarm, and at most 1 false event per 10 minutes of clean video;
* on the `val` split's real degraded footage: the distortion a person sees is detected in every
  item (recall of at least one half: most of its frames flagged);
* on the synthetic test set: micro-F1 and exact match not more than 0.01 below the shipped model's.

It reads what `scopewatch check-real val` and `scopewatch evaluate` report; nothing here looks at
the `eval` split. Among several candidates that pass, the one with the fewest clean-frame alarms
on val, then the best mean recall, is chosen. When none passes, `choose` can (when asked) take the
one failing the fewest checks, but only if it fails fewer than the weights already shipped, scored
the same way: never a step back by the rule's own count, and the report names what still fails.
A candidate with the very weights shipped (the same digest: `make weights` reproduced them) is
chosen before that, as installing it changes nothing.

Beside the synthetic checks the report gives each candidate's difference from the shipped weights
with a paired-bootstrap range over the test clips: the rule's 0.01 is finer than what a 120-clip
test set resolves, and the range says by how much.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training.metrics import exact_match, micro_f1, paired_bootstrap
from training.provenance import machine_text

MAX_CLEAN_ALARM = 0.05
MAX_FALSE_EVENTS_PER_10MIN = 1.0
MIN_RECALL = 0.5
MAX_SYNTHETIC_DROP = 0.01


@dataclass(frozen=True)
class Check:
    rule: str
    value: float
    limit: float
    passed: bool


def clean_figures(val_report: dict) -> tuple[float, float, int, float]:
    """(share of clean frames with any alarm, false events per 10 min, frames, seconds) pooled
    over the val report's clean items."""
    clean = [r for r in val_report["items"] if r["kind"] == "clean" and r.get("frames")]
    frames = sum(r["frames"] for r in clean)
    alarmed = sum(r["any_alarm"] * r["frames"] for r in clean)
    seconds = sum(r.get("seconds", 0.0) for r in clean)
    events = sum(r.get("events", 0) for r in clean)
    return (alarmed / frames if frames else float("nan"), events * 600.0 / seconds if seconds else 0.0,
            frames, seconds)


def checks(val_report: dict, synthetic: dict, shipped_synthetic: dict | None) -> list[Check]:
    alarm, events, frames, seconds = clean_figures(val_report)
    out = [Check(f"val clean frames with any alarm ({frames} frames)", alarm, MAX_CLEAN_ALARM,
                 alarm <= MAX_CLEAN_ALARM),
           Check(f"val clean false events per 10 min ({seconds:.1f} s of video)", events, MAX_FALSE_EVENTS_PER_10MIN,
                 events <= MAX_FALSE_EVENTS_PER_10MIN)]
    for r in val_report["items"]:
        if r["kind"] != "clean" and r.get("frames"):
            where = f"{r['path']} {r.get('window', '')}".strip()
            out.append(Check(f"val {r['kind']} recall, {where}", r["recall"], MIN_RECALL, r["recall"] >= MIN_RECALL))
    if shipped_synthetic is not None:
        for key in ("micro_f1", "exact_match"):
            limit = shipped_synthetic[key] - MAX_SYNTHETIC_DROP
            out.append(Check(f"synthetic test {key} (shipped {shipped_synthetic[key]:.3f})", synthetic[key], limit,
                             synthetic[key] >= limit))
    return out


def synthetic_against(synthetic: dict, shipped_synthetic: dict) -> dict | None:
    """The candidate's micro-F1 and exact match minus the shipped weights' on the same synthetic
    clips, each with its paired-bootstrap 95% range: whether the check's 0.01 is a difference the
    test set can see. None when the two reports do not hold the same clips' decisions."""
    a, b = synthetic.get("decisions"), shipped_synthetic.get("decisions")
    if not a or not b or a["clips"] != b["clips"] or a["present"] != b["present"]:
        return None
    truth, called, shipped_called = (np.array(x, bool) for x in (a["present"], a["called"], b["called"]))
    return {name: paired_bootstrap(metric, truth, called, shipped_called)
            for name, metric in (("micro_f1", micro_f1), ("exact_match", exact_match))}


def rank_key(val_report: dict) -> tuple[float, float]:
    """Sort key among passing candidates: fewer clean alarms first, then higher mean recall."""
    alarm = clean_figures(val_report)[0]
    recalls = [r["recall"] for r in val_report["items"] if r["kind"] != "clean" and r.get("frames")]
    return (alarm, -sum(recalls) / max(1, len(recalls)))


def choose(candidates: list[dict], shipped: dict | None, fewer_failures: bool = False) -> tuple[str | None, str]:
    """The candidate to ship and why, or None and why not. Each candidate (and `shipped`, the
    weights in place, scored alike) carries its number of `failed` checks and its `rank`."""
    passing = sorted((c for c in candidates if c["failed"] == 0), key=lambda c: tuple(c["rank"]))
    if passing:
        return passing[0]["weights"], "passes every check"
    if not candidates:
        return None, "no candidates"
    digest = shipped.get("sha256") if shipped else None
    same = [c for c in candidates if digest and c.get("sha256") == digest]
    if same:
        return same[0]["weights"], "the shipped weights themselves (the same digest): reproduced"
    best = min(candidates, key=lambda c: (c["failed"], tuple(c["rank"])))
    if not fewer_failures:
        return None, f"no candidate passes every check (the best fails {best['failed']})"
    # Failing as many checks as the shipped weights, a candidate replaces them only if it ranks
    # better on val by the same key that orders the candidates (fewer clean alarms, more recall).
    if shipped is not None and (best["failed"], tuple(best["rank"])) >= (shipped["failed"], tuple(shipped["rank"])):
        return None, (f"no candidate passes every check, and the best fails {best['failed']} "
                      f"(the shipped weights {shipped['failed']}) without ranking better on val "
                      f"({', '.join(_ranks_against(best, shipped))})")
    failing = "; ".join(c["rule"] for c in best["checks"] if not c["passed"])
    tie = ""
    if shipped is not None and best["failed"] == shipped["failed"]:
        alarms, recalls = _ranks_against(best, shipped)
        tie = f", and it ranks better on val ({alarms if best['rank'][0] < shipped['rank'][0] else recalls})"
    return best["weights"], (f"no candidate passes every check; this one fails {best['failed']} "
                             f"({failing}), the shipped weights {shipped['failed'] if shipped else 'n/a'}{tie}")


def _ranks_against(candidate: dict, shipped: dict) -> tuple[str, str]:
    """The two parts of `candidate`'s val rank against the shipped weights', as text."""
    (alarm, recall), (shipped_alarm, shipped_recall) = candidate["rank"], shipped["rank"]
    return (f"clean frames alarmed {alarm:.1%} against {shipped_alarm:.1%}",
            f"mean recall {-recall:.3f} against {-shipped_recall:.3f}")


def markdown(candidates: list[dict], shipped: dict | None, chosen: str | None, why: str) -> str:
    lines = ["# Shipping rule (issue 18)", "",
             "Real `val` footage through the monitor, and the synthetic test set; `eval` is not read.", ""]
    for title, c in ([("shipped now", shipped)] if shipped else []) + [("candidate", c) for c in candidates]:
        verdict = "passes" if c["failed"] == 0 else f"fails {c['failed']} check(s)"
        lines += [f"## {title} `{c['weights']}`: {verdict}", ""]
        if c.get("sha256"):
            itself = " (the shipped weights themselves)" if shipped and c is not shipped and c["sha256"] == shipped.get("sha256") else ""
            lines += [f"Weights `{c['sha256'][:12]}`{itself}; trained on: {machine_text(c['machines'])}.", ""]
        lines += ["| rule | value | limit | |", "|---|---|---|---|"]
        for ch in c["checks"]:
            lines.append(f"| {ch['rule']} | {ch['value']:.3f} | {ch['limit']:.3f} | {'ok' if ch['passed'] else 'FAIL'} |")
        lines.append("")
        if c.get("against_shipped"):
            d = c["against_shipped"]
            lines += ["Synthetic test against the shipped weights, clip by clip (the same clips resampled "
                      f"{d['micro_f1']['resamples']} times, 95% of the differences within): "
                      + "; ".join(f"{k} {v['difference']:+.3f} ({v['low']:+.3f} to {v['high']:+.3f})" for k, v in d.items()), ""]
    lines.append(f"Chosen: `{chosen}` ({why})" if chosen else f"Chosen: none ({why}; nothing installed)")
    return "\n".join(lines) + "\n"


def as_dicts(found: list[Check]) -> list[dict]:
    return [asdict(c) for c in found]
