"""`reseg serve-predict --url URL --model NAME [--version V] SCENE... --out DIR`.

Segments whole scenes through a TF Serving REST endpoint: the same sliding
window, blending, TTA, refinement and outputs as `reseg predict` (the same
prediction step, `reseg.pipeline.predict.prediction`, with
`reseg.serving.client.ServingBackend` as the model), and the same options; `--tuning` applies
a refinement tuning (`reseg tune-refine`), as `reseg predict` does. The model is a reseg export served by TF Serving, e.g.

    docker run -p 8501:8501 \\
      --mount type=bind,source=$PWD/<root>/export/<name>,target=/models/<name> \\
      -e MODEL_NAME=<name> -t tensorflow/serving
"""

from __future__ import annotations

import argparse
import logging

from reseg import storage
from reseg.commands import predict
from reseg.commands import predict as local
from reseg.config import load_config
from reseg.errors import ConfigError
from reseg.pipeline.predict import prediction
from reseg.pipeline.run import hold_root
from reseg.serving.client import ServingBackend
from reseg.serving.rest import RetryPolicy

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:

    predict.add_arguments(parser)  # scenes, --out, --config, --labels, prediction options
    for action in parser._actions:  # --model names a served model here, not a folder
        if action.dest == "model":
            action.type, action.metavar = str, "NAME"
            action.help = "name of the model TF Serving serves"
    parser.add_argument(
        "--url", required=True, help="TF Serving's REST endpoint, e.g. http://localhost:8501"
    )
    parser.add_argument(
        "--version", type=int, help="model version (default: the newest AVAILABLE one)"
    )
    g = parser.add_argument_group("TF Serving client")
    g.add_argument(
        "--model-info",
        type=storage.argument,
        metavar="PATH",
        help="model.json (or its folder) for a served model without the model_info signature",
    )
    g.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to connect and to wait for an answer"
    )
    g.add_argument(
        "--retries",
        type=int,
        default=5,
        help="retries on 503, dropped connections and timeouts (default 5)",
    )
    g.add_argument(
        "--backoff", type=float, default=0.5, help="first retry delay, s; doubles each retry"
    )
    g.add_argument("--max-batch", type=int, help="most tiles per request (default: --batch-size)")
    g.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests in flight at once when --max-batch splits a batch (default 1)",
    )
    g.add_argument(
        "--format",
        dest="request_format",
        choices=["columns", "rows"],
        default="columns",
        help="predict request JSON: columns = `inputs` (default), rows = `instances`",
    )
    g.add_argument(
        "--load-wait",
        dest="load_wait",
        type=float,
        default=60.0,
        help="seconds to wait for a model version still loading (--wait is the --out lease's)",
    )


def run(args: argparse.Namespace) -> int:

    if args.retries < 0 or args.timeout <= 0 or args.backoff < 0:
        raise ConfigError(
            f"--retries must be >= 0, --timeout > 0 and --backoff >= 0; received "
            f"{args.retries}, {args.timeout}, {args.backoff}"
        )
    sources = local.stac_scenes(args)  # --stac / --stac-search: the items' images
    if args.out is None or not args.scenes:
        raise ConfigError("give SCENE... --out DIR: the scenes to segment and where to write")
    for x in [*args.scenes, *(args.labels or [])]:
        storage.check_uri(x)
    storage.check_output(args.out)
    if (args.max_batch is not None and args.max_batch < 1) or args.concurrency < 1:
        raise ConfigError(
            f"--max-batch and --concurrency must be at least 1; received {args.max_batch}, "
            f"{args.concurrency}"
        )
    cfg = None
    if args.config is not None:
        cfg = load_config(args.config)
    pcfg = local.predict_config(args, cfg.predict if cfg else None)
    if not args.beam:  # the config's predict.beam is for model folders; --beam is refused
        pcfg = pcfg.model_copy(update={"beam": False})
    backend = ServingBackend(
        args.url,
        args.model,
        args.version,
        model_info=args.model_info,
        policy=RetryPolicy(retries=args.retries, backoff=args.backoff, timeout=args.timeout),
        max_batch=args.max_batch,
        concurrency=args.concurrency,
        request_format=args.request_format,
        wait_s=args.load_wait,
    )
    try:
        # the same prediction as `reseg predict`: the refine tuning (--tuning: a served model
        # has no pipeline path to find its own by), scenes, outputs
        how = prediction(pcfg, backend=backend, tuning=args.tuning, data=cfg.data if cfg else None)
        with hold_root(args.out, args.wait):  # one writer per --out, as `reseg predict`
            results = how.run(local.scenes_of(args, how), args.out, local.print_scene)
            props = {"reseg:served_model": args.model, "reseg:served_version": backend.version}
            local.publish(args, results, sources, props)
    finally:
        backend.close()
    log.info(
        "%s version %d: %d requests, %d retried",
        backend.name,
        backend.version,
        backend.rest.requests,
        backend.rest.retried,
    )
    return 0
