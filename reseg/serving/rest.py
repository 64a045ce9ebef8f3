"""TF Serving's REST API: model status, metadata and predict, with timeouts and retries.

Endpoints (https://www.tensorflow.org/tfx/serving/api_rest):

    GET  /v1/models/<name>[/versions/<v>]             -> {"model_version_status": [...]}
    GET  /v1/models/<name>[/versions/<v>]/metadata    -> {"model_spec", "metadata": {"signature_def"}}
    POST /v1/models/<name>[/versions/<v>]:predict     {"signature_name", "instances" | "inputs"}
                                                      -> {"predictions"} | {"outputs"}

Errors come as `{"error": "<message>"}` with an HTTP status. `RestClient` retries
what is transient — 503 (and 502/504 from proxies), refused or dropped connections,
timeouts — with exponential backoff:

    delay_k = min(max_backoff, backoff * 2^k) * U(0.5, 1)       k = 0, 1, ..., retries - 1

(a `Retry-After` header, when sent, is used instead, up to `max_backoff`), and
ends any other error at once with `ServingError` carrying the server's message.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from reseg.errors import ResegError

log = logging.getLogger(__name__)

RETRY_STATUS = (502, 503, 504)


class ServingError(ResegError):
    """TF Serving refused a request or could not be reached; the message says which and why."""

    exit_code = 6

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class RetryPolicy:
    """How transient failures are retried (formula in the module docstring).

    Attributes:
        retries: retries after the first attempt (0: none).
        backoff: first delay, seconds.
        max_backoff: largest delay, seconds.
        timeout: seconds to connect and seconds to wait for each read of the answer.
    """

    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 10.0
    timeout: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)


def _message(response) -> str:
    """The server's error message (`{"error": ...}`), else the start of the body."""
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
    except ValueError:
        pass
    return response.text[:500] or response.reason or "no message"


class RestClient:
    """JSON requests to one TF Serving REST endpoint (`http://host:8501`); thread-safe.

    Each thread gets its own `requests.Session` (keep-alive connection pool), so
    several requests can be in flight at once.

    Args:
        url: the server's base URL.
        policy: timeouts and retries.
    """

    def __init__(self, url: str, policy: RetryPolicy | None = None):
        if not url.startswith(("http://", "https://")):
            raise ServingError(f"--url must start with http:// or https://; received {url!r}")
        self.url = url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.requests = 0  # HTTP requests sent, retries included
        self.retried = 0
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """This thread's `requests.Session`."""
        s = getattr(self._local, "session", None)
        if s is None:
            import requests

            s = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(s)
        return s

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()
        self._local = threading.local()

    def get(self, path: str) -> Any:
        """GET `path`; the answer's JSON."""
        return _json(self._call("GET", path, None), f"GET {self.url}{path}")

    def post(self, path: str, body: dict[str, Any] | bytes, raw: bool = False) -> Any:
        """POST a JSON body to `path`; the answer's JSON, or its bytes when `raw`."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        content = self._call("POST", path, data)
        return content if raw else _json(content, f"POST {self.url}{path}")

    def _count(self, retried: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.retried += int(retried)

    def _call(self, method: str, path: str, data: bytes | None) -> bytes:
        """Send with retries (module docstring); the body of the first 2xx answer."""
        import requests

        url = f"{self.url}{path}"
        p = self.policy
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(p.retries + 1):
            retry_after = None
            self._count(retried=attempt > 0)
            try:
                r = self.session.request(
                    method, url, data=data, headers=headers, timeout=(p.timeout, p.timeout)
                )
            except requests.Timeout:
                why = f"no answer within {p.timeout:g} s"
            except requests.ConnectionError as e:
                why = f"connection failed ({_short(e)})"
            else:
                if r.ok:
                    if not r.content.lstrip().startswith((b"{", b"[")):
                        raise ServingError(
                            f"{method} {url}: the answer is not JSON: {r.text[:200]!r}",
                            r.status_code,
                        )
                    return r.content
                if r.status_code not in RETRY_STATUS:
                    raise ServingError(
                        f"{method} {url}: HTTP {r.status_code}: {_message(r)}", r.status_code
                    )
                why = f"HTTP {r.status_code}: {_message(r)}"
                retry_after = r.headers.get("Retry-After")
            if attempt == p.retries:
                raise ServingError(f"{method} {url}: {why}; gave up after {p.retries + 1} attempts")
            wait = p.delay(attempt, retry_after)
            log.warning("%s %s: %s; retrying in %.2f s", method, url, why, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")


def _json(content: bytes, what: str) -> Any:
    try:
        return json.loads(content)
    except ValueError as e:
        raise ServingError(f"{what}: the answer is not valid JSON ({e})") from None


def _short(e: Exception) -> str:
    text = str(e)
    for hint in ("Connection refused", "RemoteDisconnected", "Connection aborted", "reset by peer"):
        if hint in text:
            return hint
    return text[:200]


def model_path(name: str, version: int | None = None) -> str:
    """`/v1/models/<name>[/versions/<v>]`."""
    return f"/v1/models/{name}" + ("" if version is None else f"/versions/{version}")
