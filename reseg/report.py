"""Reports of a pipeline root, read from its artifacts: the round table, plots, report.md/html.

Everything comes from files on disk (metrics.json, selection.json, methods.json), so
`reseg report ROOT` works on any finished or partial root.

Conventions of every figure (`CONVENTION`): mIoU, OA, kappa and IoU per class are
on the evaluation fold k's core pixels, which nothing else uses; mIoU averages
over the classes present in fold k's labels (`reseg.metrics`: the same class set
for every round and merge of the fold), and pixels predicted as a class absent
from them are counted as false positives. "val mIoU" is on the validation fold's
pixels, over its own labels' classes: what chose each round's epoch, the merge
weights and when rounds stop.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reseg import artifacts, layout, storage


@dataclass
class FoldView:
    fold: str
    # {round, metrics, validation, selection, dir}
    rounds: list[dict[str, Any]] = field(default_factory=list)
    merged: dict[str, Any] | None = None
    methods: dict[str, Any] | None = None
    merge_method: str | None = None


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def collect(root: str | Path, shared: layout.Shared | None = None) -> list[FoldView]:
    """Every fold of a root with the rounds found on disk, in order.

    Round 0's model, scores and metrics may be another root's (`shared`, default the root's
    `shared.json`: a study's cell reads its group's): a round's `dir` is the root's folder
    (selection, pseudo-labels), its `published` the folder of its metrics."""
    root = storage.path(root)
    shared = layout.Shared.of(root, shared)
    folds: dict[str, FoldView] = {}
    for r, name in _round_folders(root, shared):
        own = layout.rounds_root(root) / f"r{r}" / name
        pub = layout.rounds_root(shared.round_root(root, r)) / f"r{r}" / name
        folds.setdefault(name, FoldView(name)).rounds.append(
            {
                "round": r,
                "metrics": _json(pub / layout.EVAL / layout.METRICS_JSON),
                "validation": _json(pub / layout.VALIDATION / layout.METRICS_JSON),
                "selection": _json(own / layout.SELECTION / layout.SELECTION_JSON),
                "dir": own,
                "published": pub,
            }
        )
    for name, view in folds.items():
        mdir = layout.merged_root(root) / name
        view.merged = _json(mdir / layout.EVAL / layout.METRICS_JSON)
        m = _json(mdir / layout.SCORES / layout.METHODS_JSON)
        view.methods = m["methods"] if m else None
        spec = _json(mdir / layout.MERGED_JSON)
        view.merge_method = spec["method"] if spec else None
    return [folds[k] for k in sorted(folds)]


def _round_folders(root: Path, shared: layout.Shared) -> list[tuple[int, str]]:
    """(round, fold folder) of every round in the root, and of round 0 in `shared.round0`."""
    keys: set[tuple[int, str]] = set()
    bases = [(root, None)] + ([(shared.round_root(root, 0), 0)] if shared.round0 else [])
    for base, only in bases:
        for rdir in layout.rounds_root(base).glob("r*"):
            if not rdir.name[1:].isdigit() or only not in (None, int(rdir.name[1:])):
                continue
            keys |= {(int(rdir.name[1:]), f.name) for f in rdir.iterdir() if _round_folder(f)}
    return sorted(keys)


def _round_folder(p: Path) -> bool:
    return p.is_dir() and ".tmp-" not in p.name


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def round_rows(view: FoldView) -> list[dict[str, Any]]:
    """One fold's rounds and merges as records (a row each; `pandas.DataFrame(rows)` works).

    Keys: `fold`, `round` (`r<r>` or `merged <method>`), `used` (the configured merge),
    `mean_iou`, `overall_accuracy`, `kappa`, `iou <class>` per class (evaluation fold),
    `false_positives` (pixels predicted as classes absent from its labels), `val_mean_iou`
    (validation fold; rounds only), `selected` and `jaccard` (mean over classes of the
    Jaccard with the previous selection); None where there is no value (`CONVENTION`).
    """
    names = _class_names(view)
    rows = []
    for r in view.rounds:
        m, s, val = r["metrics"] or {}, r["selection"] or {}, r.get("validation") or {}
        pc = m.get("per_class", {})
        jac = [
            v["jaccard_previous"]
            for v in s.get("per_class", {}).values()
            if v.get("jaccard_previous") is not None
        ]
        rows.append(
            {
                "fold": view.fold,
                "round": f"r{r['round']}",
                "used": None,
                "mean_iou": m.get("mean_iou"),
                "overall_accuracy": m.get("overall_accuracy"),
                "kappa": m.get("kappa"),
                **{f"iou {n}": pc.get(n, {}).get("iou") for n in names},
                "false_positives": _false_positives(m),
                "val_mean_iou": val.get("mean_iou"),
                "selected": s.get("selected"),
                "jaccard": float(np.mean(jac)) if jac else None,
            }
        )
    for method, m in (view.methods or {}).items():
        pc = m.get("per_class", {})
        rows.append(
            {
                "fold": view.fold,
                "round": f"merged {method}",
                "used": method == view.merge_method,
                "mean_iou": m.get("mean_iou"),
                "overall_accuracy": m.get("overall_accuracy"),
                "kappa": m.get("kappa"),
                **{f"iou {n}": pc.get(n, {}).get("iou") for n in names},
                "false_positives": _false_positives(m),
                "val_mean_iou": None,
                "selected": None,
                "jaccard": None,
            }
        )
    return rows


def _false_positives(m: dict[str, Any]) -> int | None:
    """Pixels predicted as classes absent from the labels (None for older metrics)."""
    fp = m.get("false_positives")
    return None if fp is None else sum(v["pixels"] for v in fp.values())


CONVENTION = (
    "mIoU, OA, kappa, IoU: the evaluation fold's pixels only, mIoU over the classes in its "
    "labels ({classes}); 'absent pred.': pixels predicted as classes absent from those labels "
    "(errors, not an IoU of 0 in the mean). val mIoU: the validation fold's pixels, which chose "
    "the epochs, the merge weights and when rounds stop."
)


def convention(view: FoldView) -> str:
    """The sentence under a fold's table saying which pixels and classes each figure uses."""
    classes = next((r["metrics"].get("class_set") for r in view.rounds if r["metrics"]), None)
    return CONVENTION.format(classes=", ".join(classes) if classes else "–")


def round_table(view: FoldView) -> str:
    """Markdown table of one fold: a row per round, then the merged results (`CONVENTION`)."""
    names = _class_names(view)
    head = ["round", "mIoU", "OA", "kappa", *[f"IoU {n}" for n in names]]
    head += ["absent pred.", "val mIoU", "selected", "Jaccard vs prev."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in round_rows(view):
        merged = row["used"] is not None
        cells = [
            row["round"] + (" (used)" if row["used"] else ""),
            _f(row["mean_iou"]),
            _f(row["overall_accuracy"]),
            _f(row["kappa"]),
            *[_f(row[f"iou {n}"]) for n in names],
            "–" if row["false_positives"] is None else str(row["false_positives"]),
            "" if merged else _f(row["val_mean_iou"]),
            "" if merged else ("–" if row["selected"] is None else str(row["selected"])),
            "" if merged else _f(row["jaccard"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _class_names(view: FoldView) -> list[str]:
    for r in view.rounds:
        if r["metrics"]:
            return list(r["metrics"]["class_names"])
        if r["selection"]:
            return list(r["selection"]["per_class"])
    return []


def plot_miou(view: FoldView, path: Path) -> Path | None:
    """mIoU per round on the evaluation fold (its fixed class set), the merged result as a
    horizontal line, and the validation fold's mIoU (what chose epochs and merge weights) dashed.
    One training per round: the differences include run-to-run variation (see the study)."""
    pts = [
        (r["round"], r["metrics"]["mean_iou"])
        for r in view.rounds
        if r["metrics"] and r["metrics"]["mean_iou"] is not None
    ]
    if not pts:
        return None
    val = [
        (r["round"], r["validation"]["mean_iou"])
        for r in view.rounds
        if r.get("validation") and r["validation"]["mean_iou"] is not None
    ]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=100)
    xs, ys = zip(*pts, strict=True)
    ax.plot(xs, ys, "o-", label="round, evaluation fold")
    if val:
        vx, vy = zip(*val, strict=True)
        ax.plot(vx, vy, "s:", color="#7570b3", label="round, validation fold")
    if view.merged and view.merged.get("mean_iou") is not None:
        ax.axhline(
            view.merged["mean_iou"], color="#d95f02", ls="--", label=f"merged ({view.merge_method})"
        )
    ax.set_xlabel("round")
    ax.set_ylabel("mIoU (labelled classes)")
    # from 0: a zoomed axis makes one run's wiggles look like effects
    top = max([*ys, *(y for _, y in val), (view.merged or {}).get("mean_iou") or 0.0])
    ax.set_ylim(0, min(1.0, top + 0.1))
    ax.set_xticks(list(xs))
    ax.set_title(f"mIoU per round, evaluation {view.fold} (one run)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    storage.save_figure(fig, path)
    plt.close(fig)
    return path


REPORT_VERSION = 1
"""Part of the report's staging folder name (`report.tmp-FP`); the report is written anew by
every call, so a killed one's folder is simply written over by the next."""


def write_report(root: str | Path, shared: layout.Shared | None = None) -> Path:
    """`<root>/report/report.md` and `report.html` with tables and pictures; returns the md path.

    Staged and published like every artifact (`reseg.artifacts.stage`): written into
    `report.tmp-FP/` and moved into place with its manifest, so a killed report leaves no
    `report/` (nor half of one) and an older report stays whole until the new one replaces it.
    Links are relative to `report/`, where the files end up. `shared`: the roots the tiles,
    stats and round 0 are read from (default the root's `shared.json`, `layout.Shared`)."""
    root = storage.path(root)
    out = layout.report_dir(root)
    fp = artifacts.fingerprint("report", REPORT_VERSION)
    with artifacts.stage(out, fp, "report") as st:
        _write_report(root, out, storage.path(st.dir), layout.Shared.of(root, shared))
    return out / "report.md"


def _setup_line(cfg: dict[str, Any]) -> str:
    """The report's header: the model, the rounds and what each round after round 0 trains on
    (the labelled-pixel selection, or the pseudo-labels that replace it)."""
    rounds = cfg["rounds"]
    head = f"Model `{cfg['model']['name']}`, {rounds['count']} rounds after round 0"
    ps = rounds.get("pseudo")
    if ps:
        x = ps["grow"] and "{start}% + {step}% a round, at most {max}%".format(**ps["grow"])
        return (
            f"{head}, pseudo-label rounds: per predicted class the top "
            f"{x or format(ps['percent'], 'g') + '%'} of the unlabelled and target pixels by `{ps['score']}`"
            + (f", score >= {ps['floor']}" if ps["floor"] is not None else "")
            + f", weight {ps['weight']:g}, rounds start by `{rounds['init']}`."
        )
    sel = rounds.get("selection", {})
    return (
        f"{head}, selection: {sel.get('direction')} {sel.get('percent')}% by "
        f"`{sel.get('score')}` score, weighting `{sel.get('weighting')}`, rounds start by "
        f"`{rounds['init']}`."
    )


def _write_report(root: Path, out: Path, into: Path, shared: layout.Shared) -> None:
    """The report's files written `into` a folder, their links relative to `out`."""
    views = collect(root, shared)
    name = storage.resolve(root).name
    md = [f"# reseg report: {name}", ""]
    cfg = _json(layout.config_file(root))
    if cfg:
        md += [_setup_line(cfg), ""]
    stats = layout.stats_dir(shared.data_root(root)) / layout.CLASS_PIXELS_PNG
    if stats.exists():
        md += ["## Data", "", f"![class pixels per fold]({_rel(stats, out)})", ""]
    for v in views:
        md += [f"## Evaluation {v.fold}", "", round_table(v), "", convention(v), ""]
        md += pseudo_section(root, v, out)
        png = plot_miou(v, into / f"miou_{v.fold}.png")
        if png:
            md += [f"![mIoU per round]({png.name})", ""]
        for r in v.rounds:
            d, pub = r["dir"], r["published"]
            pics = [
                p
                for p in (
                    pub / layout.EVAL / layout.CONFUSION_PNG,
                    pub / layout.EVAL / layout.PER_CLASS_PNG,
                    d / layout.SELECTION / layout.SCORE_HIST_PNG,
                )
                if p.exists()
            ]
            if pics:
                md += [
                    f"### Round {r['round']}",
                    "",
                    *[f"![{p.stem}]({_rel(p, out)})" for p in pics],
                    "",
                ]
        mdir = layout.merged_root(root) / v.fold / layout.EVAL
        if (mdir / layout.CONFUSION_PNG).exists():
            md += ["### Merged", "", f"![confusion]({_rel(mdir / layout.CONFUSION_PNG, out)})", ""]
    text = "\n".join(md)
    (into / "report.md").write_text(text)
    (into / "report.html").write_text(to_html(text, f"reseg report {root.name}"))


def _rel(path: Path, start: Path) -> str:
    return storage.relpath(path, start)


def to_html(md: str, title: str) -> str:
    """The small Markdown subset the report uses (headings, tables, images, paragraphs) as HTML."""
    body, table = [], []

    def flush() -> None:
        if table:
            rows = [
                r
                for r in table
                if not re.fullmatch(r"\|(-+\|)+", r.replace(" ", "").replace("---", "-"))
            ]
            cells = [[html.escape(c.strip()) for c in r.strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            rest = "".join(
                "<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rest}</tbody></table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if m := re.match(r"(#+) (.*)", line):
            n = len(m.group(1))
            body.append(f"<h{n}>{html.escape(m.group(2))}</h{n}>")
        elif m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line):
            body.append(f'<img alt="{html.escape(m.group(1))}" src="{html.escape(m.group(2))}">')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "img{max-width:100%;margin:4px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


# --- pseudo-label rounds and target scenes (issue 19) -----------------------------------


def pseudo_rows(root: str | Path, view: FoldView) -> list[dict[str, Any]]:
    """Per round of one fold: target metrics and the pseudo-labels' counts and precision.

    Keys: `round` (`r<r>` or `merged`), `target_mean_iou`, `target_overall_accuracy`,
    `pseudo_selected`, `pseudo_percent` (x of that selection), `pseudo_accuracy` (share of
    the selected pixels with a target label whose pseudo-label is right), `pool_accuracy`
    (the same over every pool pixel: what selection gains), `precision <class>`,
    `jaccard` (mean over classes). Empty when the fold has neither.
    """
    rows = []
    names = _class_names(view)  # class order (pseudo.json's keys are sorted)
    for r in view.rounds:
        d = r["dir"]
        t = _json(r["published"] / layout.TARGET / layout.METRICS_JSON) or {}
        p = _json(d / layout.PSEUDO / layout.PSEUDO_JSON)
        if not t and not p:
            continue
        pc = (p or {}).get("per_class", {})
        jac = [v["jaccard_previous"] for v in pc.values() if v["jaccard_previous"] is not None]
        rows.append(
            {
                "round": f"r{r['round']}",
                "target_mean_iou": t.get("mean_iou"),
                "target_overall_accuracy": t.get("overall_accuracy"),
                "pseudo_selected": None if p is None else p["selected"],
                "pseudo_percent": next((v["percent"] for v in pc.values()), None),
                "pseudo_accuracy": None if p is None else p["accuracy"],
                "pool_accuracy": None if p is None else p["pool_accuracy"],
                **{f"precision {n}": pc.get(n, {}).get("precision") for n in names or pc},
                "jaccard": float(np.mean(jac)) if jac else None,
            }
        )
    merged = _json(layout.merged_root(root) / view.fold / layout.TARGET / layout.METRICS_JSON)
    if rows and merged:
        rows.append(
            {
                "round": f"merged {view.merge_method or ''}".strip(),
                "target_mean_iou": merged.get("mean_iou"),
                "target_overall_accuracy": merged.get("overall_accuracy"),
            }
        )
    return rows


def pseudo_section(root: Path, view: FoldView, out: Path) -> list[str]:
    """Markdown: the target and pseudo-label table of one fold, and its pictures."""
    rows = pseudo_rows(root, view)
    if not rows:
        return []
    classes = [k[len("precision ") :] for k in rows[0] if k.startswith("precision ")]
    head = ["round", "target mIoU", "target OA", "pseudo-labels", "x %", "their accuracy"]
    head += ["pool accuracy", *[f"precision {c}" for c in classes], "Jaccard vs prev."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        n = row.get("pseudo_selected")
        cells = [
            row["round"],
            _f(row["target_mean_iou"]),
            _f(row["target_overall_accuracy"]),
            "–" if n is None else str(n),
            "–" if row.get("pseudo_percent") is None else f"{row['pseudo_percent']:g}",
            _f(row.get("pseudo_accuracy")),
            _f(row.get("pool_accuracy")),
            *[_f(row.get(f"precision {c}")) for c in classes],
            _f(row.get("jaccard")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    md = [
        f"### Target pixels and pseudo-labels, {view.fold}",
        "",
        "Target mIoU: every target pixel (labels used for nothing else). Accuracy and "
        "precision of the pseudo-labels: over the selected pixels that have a target label; "
        "pool accuracy: the argmax over every candidate pixel, unselected. The merged row "
        "covers the target pixels of the evaluation fold's tiles only (what the merger joins).",
        "",
        *lines,
        "",
    ]
    for r in view.rounds:
        d = r["dir"]
        pics = [
            p
            for p in (
                r["published"] / layout.TARGET / layout.CONFUSION_PNG,
                d / layout.PSEUDO / layout.SCORE_HIST_PNG,
            )
            if p.exists()
        ]
        if pics:
            md += [
                f"Round {r['round']}: "
                + " ".join(f"![{p.parent.name} {p.stem}]({_rel(p, out)})" for p in pics),
                "",
            ]
    return md
