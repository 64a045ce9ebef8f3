"""A stand-in for TF Serving's REST API, for tests (the real binary is not installable here).

It loads each version folder of a model base path with `tf.saved_model.load` and
answers TF Serving's documented REST contract
(https://www.tensorflow.org/tfx/serving/api_rest):

    GET  /v1/models/<name>[/versions/<v>]             model status
    GET  /v1/models/<name>[/versions/<v>]/metadata    signature defs (SignatureDefMap JSON)
    POST /v1/models/<name>[/versions/<v>]:predict     `instances` (row) or `inputs` (columnar)

with `{"error": "..."}` bodies: 404 for an unknown model or version, 400 for a
malformed request or one the graph rejects, 500 otherwise. Like TF Serving's
default version policy it serves only the newest version unless `policy="all"`;
`states[(name, version)]` can report a version as LOADING (not servable yet).

Faults can be injected for the next requests (`fail`, `drop`, `delay`): answer
with an HTTP status (503 by default), close the connection without answering, or
wait before answering.

    with StandIn({"reseg": "root/export/reseg"}) as server:
        server.fail(2)                 # the next two requests get 503
        ServingBackend(server.url, "reseg")

Run alone: `python -m tests.serving.standin reseg=root/export/reseg --port 8501`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

PATH = re.compile(
    r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata|:predict|:classify|:regress)?$"
)
SKIP_SIGNATURES = ("__saved_model_init_op",)


class RestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Fault:
    kind: str  # "status", "drop", "delay"
    value: float
    only: str | None  # "status", "metadata", "predict" or None for any request


class _Version:
    """One loaded SavedModel version and its SignatureDef map as TF Serving reports it."""

    def __init__(self, path: Path):
        import tensorflow as tf
        from google.protobuf.json_format import MessageToDict
        from tensorflow.core.protobuf import saved_model_pb2

        self.loaded = tf.saved_model.load(str(path))
        sm = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        defs = sm.meta_graphs[0].signature_def
        self.signature_defs = {
            k: MessageToDict(v, preserving_proto_field_name=True)
            for k, v in defs.items()
            if k not in SKIP_SIGNATURES
        }
        self.input_dtypes = {
            name: {k: tf.as_dtype(t.dtype).as_numpy_dtype for k, t in sd.inputs.items()}
            for name, sd in defs.items()
            if name not in SKIP_SIGNATURES
        }


class StandIn:
    """The server; `models` maps a model name to its base path (numeric version folders)."""

    def __init__(self, models: dict[str, str | Path], policy: str = "latest"):
        self.bases = {name: Path(p) for name, p in models.items()}
        self.policy = policy
        self.versions: dict[str, dict[int, _Version]] = {}
        self.counts: Counter = Counter()
        self.faults: list[_Fault] = []
        self.states: dict[tuple[str, int], str] = {}  # e.g. ("m", 2): "LOADING"; default AVAILABLE
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.reload()

    def reload(self) -> None:
        """(Re)load the versions the policy serves from every base path."""
        for name, base in self.bases.items():
            found = (
                sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
                if base.is_dir()
                else []
            )
            if self.policy == "latest":
                found = found[-1:]
            have = self.versions.get(name, {})
            self.versions[name] = {v: have.get(v) or _Version(base / str(v)) for v in found}

    # --- fault injection -----------------------------------------------------------------

    def fail(self, n: int = 1, status: int = 503, only: str | None = None) -> None:
        """The next `n` (matching) requests are answered with `status` and an error body."""
        with self.lock:
            self.faults += [_Fault("status", status, only) for _ in range(n)]

    def drop(self, n: int = 1, only: str | None = None) -> None:
        """The next `n` (matching) requests are read, then the connection is closed unanswered."""
        with self.lock:
            self.faults += [_Fault("drop", 0, only) for _ in range(n)]

    def delay(self, seconds: float, n: int = 1, only: str | None = None) -> None:
        """The next `n` (matching) requests are answered after `seconds`."""
        with self.lock:
            self.faults += [_Fault("delay", seconds, only) for _ in range(n)]

    def _take_fault(self, kind: str) -> _Fault | None:
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.only in (None, kind):
                    return self.faults.pop(i)
        return None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.httpd is not None, "start() the server first"
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> StandIn:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=10)
            self.httpd = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the REST contract ----------------------------------------------------------------

    def _servable(self, name: str, version: str | None) -> tuple[int, _Version]:
        if name not in self.versions:
            raise RestError(404, f"Servable not found for request: Latest({name})")
        served = self.versions[name]
        if version is None:
            if not served:
                raise RestError(404, f"Servable not found for request: Latest({name})")
            ready = [v for v in served if self._state(name, v) == "AVAILABLE"]
            if not ready:
                raise RestError(404, f"Servable not found for request: Latest({name})")
            return max(ready), served[max(ready)]
        if int(version) not in served or self._state(name, int(version)) != "AVAILABLE":
            raise RestError(404, f"Servable not found for request: Specific({name}, {version})")
        return int(version), served[int(version)]

    def _state(self, name: str, version: int) -> str:
        return self.states.get((name, version), "AVAILABLE")

    def status(self, name: str, version: str | None) -> dict[str, Any]:
        if name not in self.versions or (
            version is not None and int(version) not in self.versions[name]
        ):
            what = (
                f"version {version} of model {name}" if version else f"any versions of model {name}"
            )
            raise RestError(404, f"Could not find {what}")
        vs = [int(version)] if version is not None else sorted(self.versions[name], reverse=True)
        ok = {"error_code": "OK", "error_message": ""}
        return {
            "model_version_status": [
                {"version": str(v), "state": self._state(name, v), "status": ok} for v in vs
            ]
        }

    def metadata(self, name: str, version: str | None) -> dict[str, Any]:
        v, sv = self._servable(name, version)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(v)},
            "metadata": {
                "signature_def": {
                    "signature_def": sv.signature_defs,
                    "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                }
            },
        }

    def predict(self, name: str, version: str | None, body: bytes) -> dict[str, Any]:
        import tensorflow as tf

        _, sv = self._servable(name, version)
        try:
            req = json.loads(body)
        except ValueError as e:
            raise RestError(400, f"JSON Parse error: {e}") from None
        if not isinstance(req, dict):
            raise RestError(400, "JSON Value: is not an object")
        sig = req.get("signature_name") or "serving_default"
        if sig not in sv.input_dtypes:
            raise RestError(400, f'Serving signature name: "{sig}" not found in signature def')
        dtypes = sv.input_dtypes[sig]
        rows = "instances" in req
        if rows == ("inputs" in req):
            raise RestError(
                400,
                "Missing 'inputs' or 'instances' key"
                if not rows
                else "Not both 'instances' and 'inputs' can be present",
            )
        named = _named_inputs(req["instances"] if rows else req["inputs"], rows, list(dtypes))
        if set(named) != set(dtypes):
            raise RestError(
                400,
                f"input size does not match signature: {len(named)}!={len(dtypes)} "
                f"len({{{','.join(sorted(named))}}}) != len({{{','.join(sorted(dtypes))}}})",
            )
        try:
            feed = {k: tf.constant(np.asarray(v, dtype=dtypes[k])) for k, v in named.items()}
        except (ValueError, TypeError, OverflowError) as e:
            raise RestError(400, f"Failed to process element: {e}") from None
        try:
            out = sv.loaded.signatures[sig](**feed)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
            raise RestError(400, _tf_message(e)) from None
        out = {k: _jsonable(np.asarray(v.numpy())) for k, v in out.items()}
        if not rows:
            return {"outputs": next(iter(out.values())) if len(out) == 1 else out}
        n = {k: len(v) if isinstance(v, list) else None for k, v in out.items()}
        if len(set(n.values())) != 1 or None in n.values():
            raise RestError(400, f"Tensors have inconsistent batch sizes for the row format: {n}")
        count = next(iter(n.values()))
        if len(out) == 1:
            return {"predictions": next(iter(out.values()))}
        return {"predictions": [{k: v[i] for k, v in out.items()} for i in range(count)]}


def _named_inputs(value: Any, rows: bool, names: list[str]) -> dict[str, Any]:
    """Inputs by name from the row (`instances`) or columnar (`inputs`) format."""
    if rows:
        if not isinstance(value, list) or not value:
            raise RestError(400, "'instances' must be a non-empty list")
        if isinstance(value[0], dict):
            keys = set(value[0])
            if any(not isinstance(r, dict) or set(r) != keys for r in value):
                raise RestError(400, "Expecting object with the same keys in every instance")
            return {k: [r[k] for r in value] for k in keys}
        if len(names) != 1:
            raise RestError(400, "instances must be objects naming the inputs of this signature")
        return {names[0]: value}
    if isinstance(value, dict):
        return value
    if len(names) != 1:
        raise RestError(400, "inputs must be an object naming the inputs of this signature")
    return {names[0]: value}


def _tf_message(e: Exception) -> str:
    """The useful lines of a TF error (TF Serving shows the op's message, not a stack)."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(ln for ln in lines if not ln.startswith(noise)) or repr(e)


def _jsonable(a: np.ndarray) -> Any:
    if a.dtype.kind in "SO":
        return a.astype(object).item().decode() if a.ndim == 0 else [x.decode() for x in a.ravel()]
    return a.tolist()


def _handler(server: StandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving

        def log_message(self, *args) -> None:  # quiet
            pass

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.close_connection = True

        def _route(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            m = PATH.match(self.path)
            kind = (
                "predict"
                if m and m.group(3) == ":predict"
                else ("metadata" if m and m.group(3) == "/metadata" else "status")
            )
            server.counts[kind] += 1
            fault = server._take_fault(kind)
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.value)
            if fault is not None and fault.kind == "status":
                return self._answer(int(fault.value), {"error": "injected: server is unavailable"})
            try:
                if m is None:
                    raise RestError(404, f"Malformed request: {method} {self.path}")
                name, version, what = m.groups()
                if method == "GET" and what is None:
                    return self._answer(200, server.status(name, version))
                if method == "GET" and what == "/metadata":
                    return self._answer(200, server.metadata(name, version))
                if method == "POST" and what == ":predict":
                    return self._answer(200, server.predict(name, version, body))
                raise RestError(
                    400 if what in (":classify", ":regress") else 404,
                    f"Unsupported request: {method} {self.path}",
                )
            except RestError as e:
                self._answer(e.status, {"error": str(e)})
            except Exception as e:  # a bug of the stand-in or the graph: TF Serving says 500
                self._answer(500, {"error": f"{type(e).__name__}: {e}"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

    return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="TF Serving REST stand-in (tests only)")
    p.add_argument("models", nargs="+", metavar="NAME=BASE_PATH")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--policy", choices=["latest", "all"], default="latest")
    args = p.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.models)
    server = StandIn(models, args.policy).start(args.port)
    print(f"serving {sorted(models)} at {server.url} (Ctrl-C ends)", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
