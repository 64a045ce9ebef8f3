"""Tiling throughput: the Beam job (1 and 2 workers) against a plain loop, in one run.

A synthetic 8,000 x 8,000 x 4 uint16 GeoTIFF (tiled, deflate) with a label raster
is written to disk; each variant tiles it (256-pixel tiles, 32 overlap) into gzip
TFRecords of identical content. The plain loop calls the same shard writer shard
after shard in one process, so the ratios measure what Beam adds or buys.

Prints a table; writes bench/results/tiling.json. `--size 4000` for a quicker run;
`--smoke`: a 600² scene, the loop and Beam with 1 worker (seconds; checks that it runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import _env  # noqa: E402,I001  (bench/_env.py; puts the repository's reseg first on the path)
import numpy as np
import rasterio
from rasterio.transform import from_origin

from reseg.components.tiling import ShardContext, plan, tile, write_shard  # noqa: E402
from reseg.config import parse_config  # noqa: E402


def make_scene(d: Path, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    img, lab = d / "scene.tif", d / "labels.tif"
    prof = dict(
        driver="GTiff",
        height=size,
        width=size,
        crs="EPSG:32632",
        transform=from_origin(500000, 6200000, 10, 10),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    with rasterio.open(img, "w", count=4, dtype="uint16", **prof) as dst:
        for r in range(0, size, 512):
            h = min(512, size - r)
            # smooth fields plus noise: compresses like imagery, not like pure noise
            base = np.linspace(300, 3000, size, dtype=np.float32)[None, :] + 400 * np.sin(r / 300)
            block = base[None] + rng.normal(0, 60, (4, h, size))
            dst.write(block.astype("uint16"), window=rasterio.windows.Window(0, r, size, h))
    with rasterio.open(lab, "w", count=1, dtype="uint8", **prof) as dst:
        for r in range(0, size, 512):
            h = min(512, size - r)
            cls = (np.arange(size)[None, :] // 700 + (r // 700)) % 6
            dst.write(
                np.repeat(cls, h, 0).astype("uint8")[None],
                window=rasterio.windows.Window(0, r, size, h),
            )
    return img, lab


def config(img: Path, lab: Path, args: list[str]):
    return parse_config(
        {
            "data": {
                "scenes": [{"image": str(img), "labels": str(lab)}],
                "classes": [{"name": f"c{i}"} for i in range(6)],
            },
            "tiling": {"tile_size": 256, "overlap": 32, "folds": 5, "shard_rows": 2},
            "beam": {"args": args},
            "tracking": {"enabled": False},
        }
    )


def plain_loop(cfg, out: Path) -> None:
    infos, _, tables, shards = plan(cfg.data, cfg.tiling)
    out.mkdir(parents=True)
    ctx = ShardContext(tuple(infos), cfg.data, cfg.tiling, tuple(tables), str(out))
    for s in shards:
        write_shard(ctx, s)


def main(argv: list[str] | None = None) -> None:
    # long: the benchmark's procedure in the order it runs
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=8000)
    _env.add_arguments(ap)
    a = ap.parse_args(argv)
    run = _env.Run(a)
    if run.smoke:
        a.size = 600
    work = Path(tempfile.mkdtemp(prefix="bench-tiling-"))
    try:
        img, lab = make_scene(work, a.size)
        # warm-up outside the timings: the TensorFlow protos import and the page cache
        from reseg.tfrecords_schema.schema import _example_pb2

        _example_pb2()
        for f in (img, lab):
            f.read_bytes()
        raw_mb = a.size * a.size * 4 * 2 / 1e6
        variants = {
            "plain loop": None,
            "Beam, 1 worker": ["--direct_num_workers=1", "--direct_running_mode=in_memory"],
            "Beam, 2 workers, threads": [
                "--direct_num_workers=2",
                "--direct_running_mode=multi_threading",
            ],
            "Beam, 2 workers, processes": [
                "--direct_num_workers=2",
                "--direct_running_mode=multi_processing",
            ],
        }
        if run.smoke:
            variants = dict(list(variants.items())[:2])
        rows = []
        tiles_n = None
        for name, args in variants.items():
            out = work / name.replace(" ", "_").replace(",", "")
            cfg = config(img, lab, args or [])
            t0 = time.perf_counter()
            if args is None:
                plain_loop(cfg, out)
                files = sorted(out.glob("part-*.tfrecord.gz"))
                n = sum(json.loads(p.read_text())["tiles"] for p in out.glob("part-*.json"))
            else:
                ts = tile(cfg.data, cfg.tiling, out, cfg.beam.args)
                files, n = list(ts.files), ts.manifest["counts"]["tiles"]
            secs = time.perf_counter() - t0
            tiles_n = tiles_n or n
            assert n == tiles_n, (name, n, tiles_n)
            rows.append(
                {
                    "variant": name,
                    "seconds": secs,
                    "tiles": n,
                    "tiles_per_s": n / secs,
                    "raw_MB_per_s": raw_mb / secs,
                    "output_MB": sum(f.stat().st_size for f in files) / 1e6,
                }
            )
            shutil.rmtree(out, ignore_errors=True)
        base = rows[0]["seconds"]
        for r in rows:
            r["speed_vs_loop"] = base / r["seconds"]
        print(
            f"\ntiling {a.size} x {a.size} x 4 uint16 ({raw_mb:.0f} MB raw), tiles 256/32, {tiles_n} tiles, "
            f"{os.cpu_count()} cores"
        )
        print(f"{'variant':<30} {'s':>8} {'tiles/s':>9} {'MB/s':>8} {'vs loop':>8}")
        for r in rows:
            print(
                f"{r['variant']:<30} {r['seconds']:>8.1f} {r['tiles_per_s']:>9.1f} {r['raw_MB_per_s']:>8.1f} "
                f"{r['speed_vs_loop']:>7.2f}x"
            )
        run.write("tiling.json", {"size": a.size, "rows": rows})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
