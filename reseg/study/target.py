"""Target pixels in the study: source only (round 0) against every cell's rounds.

A study whose base config has target pixels (scenes with role target, or `target_blocks`)
evaluates every round on them (`reseg.components.target`). For a cell and fold k:

    d_k = target mIoU_k(cell) - target mIoU_k(round 0)

on the same target pixels, predicted by the cell's last round (or its merge) and by the
group's round 0, which saw no target label and no pseudo-label: *source only*. The
primary figures are the seeds x folds comparison of `stats.paired_comparison` (training
variation included; the verdict); the secondary one the paired tile bootstrap of
`stats.tile_interval` over the target tiles of each run (whose labels no model trained on).

Pseudo-label cells (`kind` pseudo, pseudo_cbst) are compared with source only and with
every labelled-pixel cell of their group (the grid and the labelled-pixel baselines,
which also run on these scenes but train on labelled pixels only). The verdict names the
best pseudo-label cell, picked after the fact; every candidate's comparisons are in the
study's Holm family (`target_data`), so the adjusted p of the one picked accounts for
the pick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reseg import artifacts, layout, storage
from reseg.metrics import scores
from reseg.study import stats, tilecm
from reseg.study.cells import ROUND0_KINDS, seed_root
from reseg.study.plan import Plan
from reseg.study.results import CellResult, adjust, runs_comparison

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
    `runs_merged` (`stats.Comparison`s of the paired differences to round 0 over seeds x
    folds: the primary view) and `d_last`, `d_merged` (Interval dicts of the paired tile
    bootstrap over target tiles, trained models held fixed: the secondary view).
    """
    b = plan.study["bootstrap"]
    rows = []
    for i, r in enumerate(results):
        if r.cell.kind in ROUND0_KINDS:
            continue
        t = _cell_target(r)
        if not any(v is not None for v in t.vals["r0"]):
            continue
        rows.append(_target_row(r, t, b, i))
    return rows


@dataclass
class _CellTarget:
    """A cell's target figures over its (seed, fold) runs, as `target_rows` summarises them."""

    vals: dict[str, list]  # target mIoU of round 0, last, merged; pseudo-label accuracy
    pairs: dict[str, list]  # last, merged: aligned per-tile confusions (round 0, cell)
    runs: dict[str, dict]  # last, merged: (seed, fold) -> difference to round 0, or None


def _cell_target(r: CellResult) -> _CellTarget:
    """Read each run's target mIoU (round 0, last round, merge), the accuracy of the
    pseudo-labels the last round trained on, and the per-tile confusions to pair."""
    t = _CellTarget(
        vals={"r0": [], "last": [], "merged": [], "acc": []},
        pairs={"last": [], "merged": []},
        runs={"last": {}, "merged": {}},
    )
    vals, pairs, runs = t.vals, t.pairs, t.runs
    for (seed, k), f in r.runs.items():
        g, root = seed_root(r.group.root, seed), seed_root(r.cell.root, seed)
        r0 = _miou(layout.target_eval_dir(g, 0, k))
        vals["r0"].append(r0)
        got = {"last": None, "merged": _miou(layout.merged_target_dir(root, k))}
        if f.last_round is not None:
            where = g if f.last_round == 0 else root  # round 0 is the group's
            got["last"] = _miou(layout.target_eval_dir(where, f.last_round, k))
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
    return t


def _target_row(r: CellResult, t: _CellTarget, b: dict[str, Any], i: int) -> dict[str, Any]:
    """The record of one cell (`target_rows`); `i`, the cell's index, seeds its bootstrap."""
    vals, pairs, runs = t.vals, t.pairs, t.runs
    acc = stats.mean_sd(vals["acc"])[0]
    return {
        "cell": r.cell.id,
        "root": str(r.cell.root),
        "group": r.cell.group,
        "kind": r.cell.kind,
        "label": r.cell.label,
        "r0": stats.mean_sd(vals["r0"]),
        "last": stats.mean_sd(vals["last"]),
        "merged": stats.mean_sd(vals["merged"]),
        "pseudo_accuracy": acc if r.cell.kind in PSEUDO_KINDS else None,
        **{f"runs_{w}": runs_comparison(runs[w], r.k_total, b) for w in runs},
        **{
            f"d_{w}": stats.tile_interval(
                pairs[w], b["samples"], b["level"], b["seed"] + 1000 + i
            ).as_dict()
            for w in pairs
        },
    }


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _ms(t) -> str:
    m, sd, _ = t
    return "–" if m is None else (_f(m) if sd is None else f"{m:.3f} ± {sd:.3f}")


def _iv(d) -> str:
    """A difference with its interval; `d` an Interval dict or a `stats.Comparison`."""
    if isinstance(d, stats.Comparison):
        return _cmp(d)
    if d["mean"] is None:
        return "–"
    if d["low"] is None:
        return f"{d['mean']:+.3f}"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _cmp(c: stats.Comparison) -> str:
    """+0.012 [−0.004, +0.028], p = 0.09 (Holm 0.54): the seeds x folds comparison."""
    if c.estimate is None:
        return "–"
    if c.low is None:
        return f"{c.estimate:+.3f}"
    p = f"p = {c.p:.2g}" + ("" if c.p_adj is None else f", Holm p = {c.p_adj:.2g}")
    return f"{c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}] ({p})"


def _words(c: stats.Comparison) -> str:
    """What a comparison of pseudo-label minus labelled-pixel rounds says, in words."""
    v = c.verdict
    if v == "better":
        return "pseudo-labels better"
    if v == "worse":
        return "pseudo-labels worse"
    if v == "no clear difference":
        return f"no difference we can tell (MDE {c.mde:.3f})"
    return v


def _best(rows: list[dict], kinds) -> dict | None:
    """The row of `kinds` to name: among the cells whose last-round difference survives Holm,
    the one with the smallest adjusted p; else the one with the highest mean difference."""
    cand = [r for r in rows if (r["kind"] in kinds) and r["runs_last"].estimate is not None]
    sig = [r for r in cand if r["runs_last"].distinguishable]
    if sig:
        return min(sig, key=lambda r: (r["runs_last"].p_final, -abs(r["runs_last"].estimate)))
    return max(cand, key=lambda r: r["runs_last"].estimate) if cand else None


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


def paired_runs(plan: Plan, a: dict, b: dict) -> stats.Comparison:
    """Target mIoU of cell row `b`'s last round minus cell row `a`'s, paired by (seed, fold)
    run: the seeds x folds comparison (unadjusted)."""
    d: dict[tuple[int, int], float | None] = {}
    for seed in plan.seeds:
        for k in plan.folds:
            va = _last_target(seed_root(a["root"], seed), plan.rounds, k)
            vb = _last_target(seed_root(b["root"], seed), plan.rounds, k)
            d[(seed, k)] = None if va is None or vb is None else vb - va
    return runs_comparison(d, plan.tiling_folds, plan.study["bootstrap"])


def target_pairs(plan: Plan, rows: list[dict]) -> list[dict]:
    """Every (labelled-pixel cell, pseudo-label cell) pair of a group: `labelled`, `pseudo`
    (cell ids), `runs` (pseudo minus labelled over seeds x folds) and `tiles` (the target
    tile bootstrap, an Interval dict)."""
    out = []
    for gid in dict.fromkeys(r["group"] for r in rows):
        rs = [r for r in rows if r["group"] == gid]
        for p in (r for r in rs if r["kind"] in PSEUDO_KINDS):
            for lab in (r for r in rs if r["kind"] not in PSEUDO_KINDS):
                out.append(
                    {
                        "group": gid,
                        "labelled": lab["cell"],
                        "pseudo": p["cell"],
                        "runs": paired_runs(plan, lab, p),
                        "tiles": paired(plan, lab, p),
                    }
                )
    return out


def target_data(plan: Plan, results: list[CellResult]) -> tuple[list[dict], list[dict]]:
    """Target rows and pseudo-minus-labelled pairs, with every comparison of the study
    (the cells' and these) Holm-adjusted as one family (`results.adjust`)."""
    rows = target_rows(plan, results)
    pairs = target_pairs(plan, rows)
    slots = [(r, f"runs_{w}") for r in rows for w in ("last", "merged")]
    slots += [(p, "runs") for p in pairs]
    done = adjust(results, [d[k] for d, k in slots])
    for (d, k), c in zip(slots, done, strict=True):
        d[k] = c
    return rows, pairs


def verdict(rows: list[dict], pairs: list[dict]) -> list[str]:
    """Per group, in words: do pseudo-label rounds raise target mIoU, against source only and
    against the labelled-pixel rounds (seeds x folds comparisons with Holm-adjusted p first,
    the target-tile bootstrap second).

    The best cell of each kind is picked by its mean difference after the fact; its
    adjusted p is over every candidate (`target_data`), so the pick is paid for.
    """
    out = []
    for gid in dict.fromkeys(r["group"] for r in rows):
        rs = [r for r in rows if r["group"] == gid]
        p = _best(rs, PSEUDO_KINDS)
        lab = _best(rs, [k for k in {r["kind"] for r in rs} if k not in PSEUDO_KINDS])
        if p is None:
            continue
        d = p["runs_last"]
        v = d.verdict
        word = {
            "better": "help",
            "worse": "hurt",
            "no clear difference": "make no difference we can tell from round 0"
            + ("" if d.mde is None else f" (MDE {d.mde:.3f})"),
        }.get(v, f"get {v}")
        line = (
            f"- **{gid}**: pseudo-label rounds {word} on the target pixels: "
            f"{'the cell with the smallest Holm p' if d.distinguishable else 'best cell'} "
            f"{p['label']} (picked after the fact) changes target mIoU by {_cmp(d)} over "
            f"{d.seeds} seeds × {d.folds} folds (last round; target tiles {_iv(p['d_last'])}; "
            f"merged {_cmp(p['runs_merged'])}) from source only {_f(p['r0'][0])}"
        )
        if lab is not None:
            line += f"; the best labelled-pixel cell ({lab['label']}) by {_cmp(lab['runs_last'])}"
            pair = next(
                (x for x in pairs if x["labelled"] == lab["cell"] and x["pseudo"] == p["cell"]),
                None,
            )
            if pair is not None:
                line += (
                    f"; pseudo-labels minus labelled-pixel rounds: {_cmp(pair['runs'])} over "
                    f"seeds × folds (target tiles {_iv(pair['tiles'])}), " + _words(pair["runs"])
                )
        out.append(line + ".")
    return out


def _jsonable(rows: list[dict], pairs: list[dict]) -> dict:
    def conv(d: dict) -> dict:
        return {k: (v.as_dict() if isinstance(v, stats.Comparison) else v) for k, v in d.items()}

    return {"cells": [conv(r) for r in rows], "pseudo_vs_labelled": [conv(p) for p in pairs]}


def target_section(plan: Plan, target: tuple[list[dict], list[dict]]) -> list[str]:
    """Markdown: target mIoU per cell against source only, and the verdict; [] without targets.

    `target` is `target_data`'s rows and pairs (adjusted). Also writes
    `report/target.json` (`cells`, `pseudo_vs_labelled`).
    """
    rows, pairs = target
    if not rows:
        return []
    artifacts.write_json(storage.path(plan.root) / "report" / "target.json", _jsonable(rows, pairs))
    head = [
        "cell",
        "target mIoU r0 (source only)",
        "last round",
        "merged (fold-k tiles)",
        "d last vs r0 [CI seeds × folds] (p, Holm p)",
        "d merged vs r0 [CI seeds × folds] (p, Holm p)",
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
            _cmp(r["runs_last"]),
            _cmp(r["runs_merged"]),
            _iv(r["d_last"]),
            _f(r["pseudo_accuracy"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [
        "## Target pixels: pseudo-label rounds against source only",
        "",
        "Target mIoU (mean ± sd over (seed, fold) runs) on pixels whose labels train and "
        "select nothing. Round 0 is source only. d: paired difference to round 0 on the same "
        "target pixels and seed, with the seeds × folds t-interval (training "
        "variation included; p Holm-adjusted over the study's comparisons) and, secondary, a "
        "bootstrap over target tiles within each run. Pseudo-label "
        "accuracy: share of the pseudo-labels the last round trained on that match the target "
        "label (where one exists). The merger joins the evaluation fold's tiles only, so the "
        "merged figures cover the target pixels of those tiles (d merged is paired with round 0 "
        "on the same tiles); round 0 and the last round cover every target pixel.",
        "",
        *lines,
        "",
        *verdict(rows, pairs),
        "",
    ]
