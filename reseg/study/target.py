"""Target pixels in the study: source only (round 0) against every cell's rounds.

A study whose base config has target pixels (scenes with role target, or `target_blocks`)
evaluates every round on them (`reseg.components.target`). For a cell and fold k:

    d_k = target mIoU_k(cell) - target mIoU_k(round 0)

on the same target pixels, predicted by the cell's last round (or its merge) and by the
group's round 0, which saw no target label and no pseudo-label: *source only*. The
primary interval is the paired seeds x folds bootstrap of `stats.seed_fold_interval`
(training variation included); the secondary one the paired tile bootstrap of
`stats.tile_interval` over the target tiles of each run (whose labels no model trained on).

Pseudo-label cells (`kind` pseudo, pseudo_cbst) are compared with source only and with
the labelled-pixel cells (the grid and the labelled-pixel baselines), which also run on
these scenes but train on labelled pixels only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reseg import artifacts, layout
from reseg.metrics import scores
from reseg.study import stats, tilecm
from reseg.study.cells import ROUND0_KINDS, seed_root
from reseg.study.plan import Plan
from reseg.study.results import CellResult

PSEUDO_KINDS = ("pseudo", "pseudo_cbst")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _miou(path: Path) -> float | None:
    return (_json(path / layout.METRICS_JSON) or {}).get("mean_iou")


def _same_tiles(a: tuple | None, c: tuple | None) -> float | None:
    """mIoU of `c` minus mIoU of `a` (per-tile confusions) on the tiles both have, each over
    the classes in those tiles' labels; None without both or without common tiles."""
    if a is None or c is None:
        return None
    ca, cc = tilecm.aligned(a, c)
    if not len(ca):
        return None
    ma, mc = scores(ca.sum(0))["mean_iou"], scores(cc.sum(0))["mean_iou"]
    return None if ma is None or mc is None else mc - ma


def target_rows(plan: Plan, results: list[CellResult]) -> list[dict[str, Any]]:
    """One record per cell with target figures (empty when the study has no target pixels).

    Keys: `cell`, `group`, `kind`, `label`, `r0`, `last`, `merged` ((mean, sd, n) over
    (seed, fold) runs), `pseudo_accuracy` (mean over runs of the accuracy of the
    pseudo-labels the last round trained on, None for other cells), `runs_last`,
    `runs_merged` (Interval dicts of the paired differences to round 0 over seeds x folds,
    `stats.seed_fold_interval`: the primary view) and `d_last`, `d_merged` (the paired
    tile bootstrap over target tiles, trained models held fixed: the secondary view).
    """
    b = plan.study["bootstrap"]
    rows = []
    for i, r in enumerate(results):
        if r.cell.kind in ROUND0_KINDS:
            continue
        vals: dict[str, list] = {"r0": [], "last": [], "merged": [], "acc": []}
        pairs: dict[str, list] = {"last": [], "merged": []}
        runs: dict[str, dict] = {"last": {}, "merged": {}}
        for (seed, k), f in r.runs.items():
            g, root = seed_root(r.group.root, seed), seed_root(r.cell.root, seed)
            r0 = _miou(layout.target_eval_dir(g, 0, k))
            vals["r0"].append(r0)
            got = {"last": None, "merged": _miou(layout.merged_target_dir(root, k))}
            if f.last_round is not None:
                got["last"] = _miou(layout.target_eval_dir(root, f.last_round, k))
                if f.last_round > 0:
                    p = _json(layout.pseudo_dir(root, f.last_round - 1, k) / layout.PSEUDO_JSON)
                    vals["acc"].append((p or {}).get("accuracy"))
            a = tilecm.load(g / "study" / f"r0_target_fold{k}.npz")
            for what in pairs:
                vals[what].append(got[what])
                c = tilecm.load(root / "study" / f"{what}_target_fold{k}.npz")
                if a is not None and c is not None:
                    pairs[what].append(tilecm.aligned(a, c))
                if what == "merged":
                    # the merge covers fold k's tiles only: round 0 on those same tiles
                    runs[what][(seed, k)] = _same_tiles(a, c)
                else:
                    ok = got[what] is not None and r0 is not None
                    runs[what][(seed, k)] = got[what] - r0 if ok else None
        if not any(v is not None for v in vals["r0"]):
            continue
        acc = stats.mean_sd(vals["acc"])[0]
        rows.append(
            {
                "cell": r.cell.id,
                "root": str(r.cell.root),
                "group": r.cell.group,
                "kind": r.cell.kind,
                "label": r.cell.label,
                "r0": stats.mean_sd(vals["r0"]),
                "last": stats.mean_sd(vals["last"]),
                "merged": stats.mean_sd(vals["merged"]),
                "pseudo_accuracy": acc if r.cell.kind in PSEUDO_KINDS else None,
                **{
                    f"runs_{w}": stats.seed_fold_interval(
                        runs[w], b["samples"], b["level"], b["seed"] + 3000 + i, b.get("power", 0.8)
                    ).as_dict()
                    for w in runs
                },
                **{
                    f"d_{w}": stats.tile_interval(
                        pairs[w], b["samples"], b["level"], b["seed"] + 1000 + i
                    ).as_dict()
                    for w in pairs
                },
            }
        )
    return rows


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _ms(t) -> str:
    m, sd, _ = t
    return "–" if m is None else (_f(m) if sd is None else f"{m:.3f} ± {sd:.3f}")


def _iv(d: dict) -> str:
    if d["mean"] is None:
        return "–"
    if d["low"] is None:
        return f"{d['mean']:+.3f}"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _words(d: dict) -> str:
    """'better', 'worse' or 'no difference we can tell' for an interval of b - a."""
    if d["low"] is None or d["high"] is None:
        return "no interval"
    if d["low"] > 0:
        return "pseudo-labels better"
    if d["high"] < 0:
        return "pseudo-labels worse"
    return "no difference we can tell"


def _best(rows: list[dict], kinds) -> dict | None:
    """The row of `kinds` with the highest mean target difference (last round)."""
    cand = [r for r in rows if (r["kind"] in kinds) and r["runs_last"]["mean"] is not None]
    return max(cand, key=lambda r: r["runs_last"]["mean"]) if cand else None


def paired(plan: Plan, a: dict, b: dict, what: str = "last") -> dict:
    """Target mIoU of cell row `b` minus cell row `a` (their `what` result), paired over the
    target tiles within each (seed, fold) run, with its bootstrap interval (an Interval dict)."""
    pairs = []
    for seed in plan.seeds:
        for k in plan.folds:
            ca = tilecm.load(seed_root(a["root"], seed) / "study" / f"{what}_target_fold{k}.npz")
            cb = tilecm.load(seed_root(b["root"], seed) / "study" / f"{what}_target_fold{k}.npz")
            if ca is not None and cb is not None:
                pairs.append(tilecm.aligned(ca, cb))
    s = plan.study["bootstrap"]
    return stats.tile_interval(pairs, s["samples"], s["level"], s["seed"] + 2000).as_dict()


def _last_target(root: Path, rounds: int, fold: int) -> float | None:
    """Target mIoU of the last round (> 0) with target metrics under a cell's seed root."""
    for r in range(rounds, 0, -1):
        m = _miou(layout.target_eval_dir(root, r, fold))
        if m is not None:
            return m
    return None


def paired_runs(plan: Plan, a: dict, b: dict) -> dict:
    """Target mIoU of cell row `b`'s last round minus cell row `a`'s, paired by (seed, fold)
    run, with the seeds x folds interval of `stats.seed_fold_interval` (an Interval dict)."""
    d: dict[tuple[int, int], float | None] = {}
    for seed in plan.seeds:
        for k in plan.folds:
            va = _last_target(seed_root(a["root"], seed), plan.rounds, k)
            vb = _last_target(seed_root(b["root"], seed), plan.rounds, k)
            d[(seed, k)] = None if va is None or vb is None else vb - va
    s = plan.study["bootstrap"]
    return stats.seed_fold_interval(
        d, s["samples"], s["level"], s["seed"] + 4000, s.get("power", 0.8)
    ).as_dict()


def verdict(rows: list[dict], plan: Plan | None = None) -> list[str]:
    """Per group, in words: do pseudo-label rounds raise target mIoU, against source only and
    against the labelled-pixel rounds, and by how much (seeds x folds intervals first, the
    target-tile bootstrap second).

    The best cell of each kind is picked by its mean difference, so the comparison favours
    whichever kind has more cells; the intervals do not correct for that choice.
    """
    out = []
    for gid in dict.fromkeys(r["group"] for r in rows):
        rs = [r for r in rows if r["group"] == gid]
        p = _best(rs, PSEUDO_KINDS)
        lab = _best(rs, [k for k in {r["kind"] for r in rs} if k not in PSEUDO_KINDS])
        if p is None:
            continue
        d = p["runs_last"]
        sure = d["low"] is not None and (d["low"] > 0 or d["high"] < 0)
        word = (
            ("help" if d["mean"] > 0 else "hurt")
            if sure
            else "make no difference we can tell from round 0"
        )
        line = (
            f"- **{gid}**: pseudo-label rounds {word} on the target pixels: best cell "
            f"{p['label']} changes target mIoU by {_iv(d)} over seeds x folds (last round; "
            f"target tiles {_iv(p['d_last'])}; merged {_iv(p['runs_merged'])}) "
            f"from source only {_f(p['r0'][0])}"
        )
        if lab is not None:
            line += f"; the best labelled-pixel cell ({lab['label']}) by {_iv(lab['runs_last'])}"
            if plan is not None:
                vr, vs = paired_runs(plan, lab, p), paired(plan, lab, p)
                line += (
                    f"; pseudo-labels minus labelled-pixel rounds: {_iv(vr)} over seeds x folds "
                    f"(target tiles {_iv(vs)}), " + _words(vr)
                )
        out.append(line + ".")
    return out


def target_section(plan: Plan, results: list[CellResult]) -> list[str]:
    """Markdown: target mIoU per cell against source only, and the verdict; [] without targets.

    Also writes `report/target.json` (the rows).
    """
    rows = target_rows(plan, results)
    if not rows:
        return []
    artifacts.write_json(Path(plan.root) / "report" / "target.json", rows)
    head = [
        "cell",
        "target mIoU r0 (source only)",
        "last round",
        "merged (fold-k tiles)",
        "d last vs r0 [CI seeds × folds]",
        "d merged vs r0 [CI seeds × folds]",
        "d last vs r0 [CI tiles]",
        "pseudo-label accuracy",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["cell"],
            _ms(r["r0"]),
            _ms(r["last"]),
            _ms(r["merged"]),
            _iv(r["runs_last"]),
            _iv(r["runs_merged"]),
            _iv(r["d_last"]),
            _f(r["pseudo_accuracy"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [
        "## Target pixels: pseudo-label rounds against source only",
        "",
        "Target mIoU (mean ± sd over (seed, fold) runs) on pixels whose labels train and "
        "select nothing. Round 0 is source only. d: paired difference to round 0 on the same "
        "target pixels and seed, with the seeds x folds bootstrap interval (training "
        "variation included) and, secondary, a bootstrap over target tiles within each run. Pseudo-label "
        "accuracy: share of the pseudo-labels the last round trained on that match the target "
        "label (where one exists). The merger joins the evaluation fold's tiles only, so the "
        "merged figures cover the target pixels of those tiles (d merged is paired with round 0 "
        "on the same tiles); round 0 and the last round cover every target pixel.",
        "",
        *lines,
        "",
        *verdict(rows, plan),
        "",
    ]
