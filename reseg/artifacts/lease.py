"""One writer per root: the root's lease, `<root>/lease.json`.

A run, a step command, a study or a prediction into `--out` holds the lease of the root it
writes for as long as it writes (`hold`); readers take none, since they trust only published
manifests. The lease records its holder: host, pid, since (UTC) and, on object storage, when
it expires. A second writer is refused with one line naming the holder (`LeaseError`, exit
11), or with `wait` polls until the lease is free.

- On a disk the lease is an `flock` on the file (`storage.lock_local`): the kernel drops it
  when the holder's process ends, kill -9 included, so a file left by a killed run is taken
  over by the next one at once.
- On object storage it is an object created by a conditional put (`If-None-Match: *`,
  `storage.put_new`) with an expiry `RESEG_LEASE_SECONDS` (default 60 s) ahead. A heartbeat
  thread renews it every third of that, each renewal a put conditional on the version it
  last wrote (`storage.put_if`), so a killed run's lease lapses within one expiry. An expired
  lease is taken over by a put conditional on the expired version: of two runs that find it
  expired, one wins.

Clocks: an expiry is compared with the reader's clock, so hosts whose clocks differ by more
than a fraction of `RESEG_LEASE_SECONDS` should raise it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from reseg import layout, storage
from reseg.errors import LeaseError

log = logging.getLogger(__name__)

SECONDS_ENV = "RESEG_LEASE_SECONDS"
"""Lifetime of a lease object on object storage without a heartbeat (default `SECONDS`)."""
SECONDS = 60.0
POLL_SECONDS = 1.0
"""How often a waiting writer looks at the lease again."""


def lease_seconds() -> float:
    return float(os.environ.get(SECONDS_ENV) or SECONDS)


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: `expires` (epoch seconds) is None on a disk (held while the process
    lives); `token` tells this holder's own lease from a later one."""

    host: str
    pid: int
    since: float
    expires: float | None
    token: str

    @classmethod
    def me(cls, expires: float | None) -> Holder:
        return cls(socket.gethostname(), os.getpid(), time.time(), expires, uuid.uuid4().hex)

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder a lease file records; None when it is empty or not a lease."""
        try:
            raw = json.loads(data)
            return cls(
                str(raw["host"]),
                int(raw["pid"]),
                float(raw["since"]),
                None if raw.get("expires") is None else float(raw["expires"]),
                str(raw["token"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def to_bytes(self) -> bytes:
        return json.dumps(
            {**asdict(self), "since_utc": _utc(self.since)}, indent=2, sort_keys=True
        ).encode()

    def renewed(self, expires: float) -> Holder:
        return Holder(self.host, self.pid, self.since, expires, self.token)

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now or time.time()) >= self.expires

    def describe(self) -> str:
        text = f"host {self.host}, pid {self.pid}, since {_utc(self.since)}"
        if self.expires is not None:
            text += f", lease until {_utc(self.expires)} unless renewed"
        return text


class Lease:
    """A held lease; `release()` ends it. On object storage a heartbeat renews it."""

    def __init__(self, root: Any, holder: Holder, fd: int | None = None, version: str = ""):
        self.root = storage.path(root)
        self.file = layout.lease_file(root)
        self.holder = holder
        self.lost = False
        self._fd = fd
        self._version = version
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if fd is None:
            self._beat = threading.Thread(target=self._heartbeat, name="reseg-lease", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        """Renew the lease object every third of its lifetime, conditionally on the version
        written last; a failed renewal (the store unreachable) is retried at the next beat."""
        ttl = lease_seconds()
        while not self._stop.wait(ttl / 3):
            new = self.holder.renewed(time.time() + ttl)
            try:
                if not storage.put_if(self.file, new.to_bytes(), self._version):
                    self.lost = True
                    log.error("%s: the lease was taken over by another run", self.file)
                    return
                self.holder = new
                self._version = storage.read_object(self.file)[1]  # type: ignore[index]
            except Exception as e:  # keep beating: the lease lapses only after `ttl`
                # the run's own calls fail too and report the store on one line
                log.debug("%s: could not renew the lease (%s)", self.file, e)

    def release(self) -> None:
        """Remove the lease file (on a disk before the lock ends, so no later holder's file
        is removed); on object storage only while it is still this holder's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._fd is not None:
            self.file.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
            return
        now = storage.read_object(self.file)
        if now is not None and (h := Holder.parse(now[0])) is not None:
            if h.token == self.holder.token:
                storage.rmtree(self.file)


def try_acquire(root: Any) -> Lease | Holder | None:
    """The lease of `root` when it is free (or expired), else its holder (None when the
    holder is known to exist but has not written its record yet)."""
    root = storage.path(root)
    f = layout.lease_file(root)
    if not storage.is_remote(root):
        storage.mkdir(root)
        try:
            fd = storage.lock_local(f)
        except FileNotFoundError:  # the root removed by a holder that made it and ended
            return try_acquire(root)
        if fd is None:
            try:
                return Holder.parse(f.read_bytes())
            except FileNotFoundError:  # released in between: try again
                return try_acquire(root)
        me = Holder.me(None)
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.to_bytes(), 0)
        return Lease(root, me, fd=fd)
    me = Holder.me(time.time() + lease_seconds())
    if storage.put_new(f, me.to_bytes()):
        return Lease(root, me, version=storage.read_object(f)[1])  # type: ignore[index]
    now = storage.read_object(f)
    if now is None:  # released in between: try again
        return try_acquire(root)
    old = Holder.parse(now[0])
    if old is not None and not old.expired():
        return old
    if not storage.put_if(f, me.to_bytes(), now[1]):
        return try_acquire(root)  # another run took it over first, or it was released
    log.warning("%s: took over an expired lease (%s)", f, old.describe() if old else "not a lease")
    return Lease(root, me, version=storage.read_object(f)[1])  # type: ignore[index]


@contextmanager
def hold(root: Any, wait: float = 0.0) -> Iterator[Lease]:
    """Hold the lease of `root` (a disk folder is created for its lock file) while the block
    runs.

    Args:
        root: the folder or URI written.
        wait: seconds to wait for a held lease (`float('inf')`: as long as it takes); 0 refuses at
            once.

    Raises:
        LeaseError: another run holds it (after `wait`), naming the holder; also when this
            run's lease was taken over while it wrote (it lapsed: no heartbeat for a lifetime).
    """
    root = storage.path(root)
    created = not storage.is_remote(root) and not root.exists()
    lease = _acquire(root, wait)
    try:
        yield lease
    except BaseException:
        # the run failed; when the store is what failed, the lease cannot be removed either:
        # it stays and lapses (object storage: RESEG_LEASE_SECONDS), and the run's own error,
        # not the release's, is the one reported
        try:
            lease.release()
        except Exception as e:
            log.debug("%s: lease not released (%s)", lease.file, e)
        raise
    else:
        lease.release()
    finally:
        if created:
            try:
                root.rmdir()  # only when the run left nothing: a failed run leaves no root
            except OSError:
                pass
    if lease.lost:
        raise LeaseError(
            f"{root}: this run's lease lapsed and another run took the root over while it "
            f"wrote; run again (raise {SECONDS_ENV} if the store was slow)"
        )


def _acquire(root: Any, wait: float) -> Lease:
    deadline = time.monotonic() + wait
    told = False
    while True:
        got = try_acquire(root)
        if isinstance(got, Lease):
            return got
        who = got.describe() if got is not None else "a run that is starting"
        if time.monotonic() >= deadline:
            hint = "; wait for it with --wait" if wait == 0 else f" (waited {wait:g} s)"
            raise LeaseError(f"{root}: another run writes this root ({who}){hint}")
        if not told:
            log.warning("%s: waiting for the run that writes this root (%s)", root, who)
            told = True
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
