"""Durable state: per-sketch snapshots plus an append-only journal of records.

A store knows nothing of sketches: it keeps opaque byte records. The server appends one record
per accepted mutation (``append`` returns only once the record is durable, so the server can
acknowledge it), writes a snapshot from time to time (``snapshot`` atomically replaces the
previous one and drops the journal records it covers), and on start ``load`` returns the latest
snapshot plus the records after it, to be replayed in order.

Two implementations, chosen by URL (:func:`open_store`):

* ``file://DIR`` -- the embedded default. ``DIR/<name>/snapshot.bin`` (written to a temporary
  file, fsynced, renamed, directory fsynced) and ``DIR/<name>/journal.log``: framed records
  ``[u32 length][u64 seq][payload][u32 crc32]``, each fsynced before ``append`` returns.
* ``redis://HOST:PORT/DB`` -- the deployment. The snapshot is a hash, the journal a Redis Stream
  whose entry ids are the record sequence numbers; snapshot + trim run in one MULTI/EXEC.
  Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` an acknowledged
  record survives a Redis crash; with ``appendfsync everysec`` up to about one second of
  acknowledged records can be lost if the Redis host itself crashes.

Corruption (a checksum mismatch, a malformed frame in the middle of a journal, a damaged
snapshot) raises :class:`~nws_core.errors.DataLoss`; the server refuses to start on it.
The one tolerated defect is a torn record at the very end of a file journal: a write that
crashed before its fsync returned was never acknowledged, so it is dropped (and reported).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import threading
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nws_core.errors import DataLoss, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass
class Loaded:
    """What a store holds for one sketch."""

    snapshot: bytes | None
    """The latest snapshot, or None if none was written."""
    snapshot_seq: int
    """The last journal sequence number the snapshot covers (0 without a snapshot)."""
    records: list[tuple[int, bytes]] = field(default_factory=list)
    """Journal records after the snapshot, in order, as (seq, payload)."""
    dropped_tail: bool = False
    """True when an unacknowledged torn record at the end of the journal was dropped."""


class StateStore(ABC):
    """Snapshots and journals of named sketches."""

    kind = "custom"
    """A short name of the kind of store, for statistics."""

    @abstractmethod
    def append(self, name: str, payload: bytes) -> int:
        """Append a record; durable when this returns. Returns its sequence number (from 1)."""

    @abstractmethod
    def snapshot(self, name: str, data: bytes, upto_seq: int) -> None:
        """Replace the snapshot and drop the records with seq <= ``upto_seq``, atomically."""

    @abstractmethod
    def load(self, name: str) -> Loaded:
        """The latest snapshot and the records after it."""

    @abstractmethod
    def names(self) -> list[str]:
        """Names of the sketches with any state, sorted."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove a sketch's snapshot and journal."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and file handles."""

    @staticmethod
    def check_name(name: str) -> None:
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(
                f"sketch name {name!r} must match {NAME_PATTERN.pattern} "
                "(letters, digits, '.', '_', '-'; at most 128 characters)"
            )


# ------------------------------------------------------------------------------ file store

_FRAME = struct.Struct("<IQ")  # payload length, seq
_CRC = struct.Struct("<I")
_SNAP_MAGIC = b"NWSS"
_SNAP_HEAD = struct.Struct("<4sQI")  # magic, upto_seq, crc32 of data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore(StateStore):
    """Snapshots and journals in a directory, fsynced before acknowledging."""

    kind = "file"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}

    def _dir(self, name: str) -> Path:
        self.check_name(name)
        return self.root / name

    def append(self, name: str, payload: bytes) -> int:
        d = self._dir(name)
        with self._lock:
            if name not in self._seq:
                self._seq[name] = self._last_seq(name)
            seq = self._seq[name] + 1
            d.mkdir(exist_ok=True)
            head = _FRAME.pack(len(payload), seq)
            frame = head + payload + _CRC.pack(zlib.crc32(head + payload))
            fd = os.open(d / "journal.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    os.write(fd, frame)
                    os.fsync(fd)
                except OSError:
                    # not acknowledged: take the record back so that the seq is free again
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
            self._seq[name] = seq
            return seq

    def snapshot(self, name: str, data: bytes, upto_seq: int) -> None:
        d = self._dir(name)
        with self._lock:
            d.mkdir(exist_ok=True)
            tmp = d / "snapshot.bin.tmp"
            with open(tmp, "wb") as f:
                f.write(_SNAP_HEAD.pack(_SNAP_MAGIC, upto_seq, zlib.crc32(data)))
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, d / "snapshot.bin")
            _fsync_dir(d)
            # compact: keep only the records the snapshot does not cover
            loaded = self._read_journal(d, upto_seq)
            jtmp = d / "journal.log.tmp"
            with open(jtmp, "wb") as f:
                for seq, payload in loaded.records:
                    head = _FRAME.pack(len(payload), seq)
                    f.write(head + payload + _CRC.pack(zlib.crc32(head + payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(jtmp, d / "journal.log")
            _fsync_dir(d)
            self._seq[name] = max(self._seq.get(name, 0), upto_seq, self._last_seq(name))

    def load(self, name: str) -> Loaded:
        d = self._dir(name)
        with self._lock:
            snap, snap_seq = self._read_snapshot(d)
            loaded = self._read_journal(d, snap_seq)
            loaded.snapshot, loaded.snapshot_seq = snap, snap_seq
            last = loaded.records[-1][0] if loaded.records else snap_seq
            self._seq[name] = max(last, snap_seq)
            return loaded

    def names(self) -> list[str]:
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir()
            and NAME_PATTERN.fullmatch(p.name)
            and ((p / "snapshot.bin").exists() or (p / "journal.log").exists())
        )

    def delete(self, name: str) -> None:
        d = self._dir(name)
        with self._lock:
            for f in ("snapshot.bin", "journal.log", "snapshot.bin.tmp", "journal.log.tmp"):
                (d / f).unlink(missing_ok=True)
            if d.exists():
                d.rmdir()
            self._seq.pop(name, None)

    # -- internals
    def _last_seq(self, name: str) -> int:
        d = self.root / name
        snap_seq = self._read_snapshot(d)[1]
        loaded = self._read_journal(d, snap_seq)
        return loaded.records[-1][0] if loaded.records else snap_seq

    @staticmethod
    def _read_snapshot(d: Path) -> tuple[bytes | None, int]:
        path = d / "snapshot.bin"
        if not path.exists():
            return None, 0
        raw = path.read_bytes()
        if len(raw) < _SNAP_HEAD.size:
            raise DataLoss(f"snapshot {path} is truncated")
        magic, upto, crc = _SNAP_HEAD.unpack_from(raw)
        data = raw[_SNAP_HEAD.size :]
        if magic != _SNAP_MAGIC or zlib.crc32(data) != crc:
            raise DataLoss(f"snapshot {path} failed its checksum")
        return data, upto

    @staticmethod
    def _read_journal(d: Path, after_seq: int) -> Loaded:
        path = d / "journal.log"
        out = Loaded(snapshot=None, snapshot_seq=after_seq)
        if not path.exists():
            return out
        raw = path.read_bytes()
        pos, prev = 0, None
        while pos < len(raw):
            if pos + _FRAME.size > len(raw):
                out.dropped_tail = True
                break
            length, seq = _FRAME.unpack_from(raw, pos)
            end = pos + _FRAME.size + length + _CRC.size
            if end > len(raw):
                out.dropped_tail = True  # torn final write: never acknowledged
                break
            payload = raw[pos + _FRAME.size : end - _CRC.size]
            (crc,) = _CRC.unpack_from(raw, end - _CRC.size)
            if zlib.crc32(raw[pos : end - _CRC.size]) != crc:
                if end == len(raw):
                    out.dropped_tail = True  # torn final write with garbage: not acknowledged
                    break
                raise DataLoss(f"journal {path} record at byte {pos} failed its checksum")
            if prev is not None and seq != prev + 1:
                raise DataLoss(f"journal {path} skips from seq {prev} to {seq}")
            prev = seq
            if seq > after_seq:
                out.records.append((seq, payload))
            pos = end
        if out.dropped_tail:
            log.warning("journal %s: dropped a torn, unacknowledged final record", path)
        return out


# ------------------------------------------------------------------------------ redis store


class RedisStore(StateStore):
    """Snapshots in Redis hashes, journals in Redis Streams (ids are the sequence numbers)."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "nws", socket_timeout: float = 5.0) -> None:
        import redis
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.retry import Retry

        self._redis_errors: tuple[type[Exception], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
        )
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=6),
            retry_on_error=list(self._redis_errors),
            health_check_interval=10,
        )
        self.url = url
        self.prefix = prefix
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}

    def _keys(self, name: str) -> tuple[str, str]:
        self.check_name(name)
        return f"{self.prefix}:{name}:snapshot", f"{self.prefix}:{name}:journal"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._redis_errors as exc:
            raise Unavailable(f"state store (Redis) unreachable: {exc}") from exc

    def ping(self) -> bool:
        return bool(self._call(self._client.ping))

    def append(self, name: str, payload: bytes) -> int:
        _, jkey = self._keys(name)
        with self._lock:
            if name not in self._seq:
                self._seq[name] = self._last_seq(name)
            seq = self._seq[name] + 1
            fields = {"data": payload, "crc": str(zlib.crc32(payload))}
            try:
                self._call(self._client.xadd, jkey, fields, id=f"{seq}-1")
            except Exception as exc:
                # a retried XADD whose first attempt did land is an id conflict: if the entry
                # there is this record, it is appended; if it is another one (an earlier append
                # that failed on the way back), move past it and append this one after it
                if "equal or smaller" not in str(exc):
                    raise
                landed = self._call(self._client.xrange, jkey, f"{seq}-1", f"{seq}-1")
                if not (landed and landed[0][1].get(b"data") == payload):
                    self._seq[name] = self._last_seq(name)
                    seq = self._seq[name] + 1
                    self._call(self._client.xadd, jkey, fields, id=f"{seq}-1")
            self._call(self._client.sadd, f"{self.prefix}:sketches", name)
            self._seq[name] = seq
            return seq

    def snapshot(self, name: str, data: bytes, upto_seq: int) -> None:
        skey, jkey = self._keys(name)
        with self._lock:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(skey, mapping={"data": data, "seq": upto_seq, "crc": zlib.crc32(data)})
            pipe.xtrim(jkey, minid=f"{upto_seq + 1}-0")
            pipe.sadd(f"{self.prefix}:sketches", name)
            self._call(pipe.execute)
            self._seq[name] = max(self._seq.get(name, 0), upto_seq)

    def load(self, name: str) -> Loaded:
        skey, jkey = self._keys(name)
        with self._lock:
            snap = self._call(self._client.hgetall, skey)
            data, snap_seq = None, 0
            if snap:
                try:
                    data, snap_seq, crc = snap[b"data"], int(snap[b"seq"]), int(snap[b"crc"])
                except (KeyError, ValueError) as exc:
                    raise DataLoss(f"Redis snapshot {skey} is malformed") from exc
                if zlib.crc32(data) != crc:
                    raise DataLoss(f"Redis snapshot {skey} failed its checksum")
            out = Loaded(snapshot=data, snapshot_seq=snap_seq)
            prev = snap_seq
            for entry_id, fields in self._call(self._client.xrange, jkey, f"{snap_seq + 1}-0"):
                seq = int(entry_id.split(b"-")[0])
                payload = fields.get(b"data")
                crc = fields.get(b"crc")
                if payload is None or crc is None or zlib.crc32(payload) != int(crc):
                    raise DataLoss(f"Redis journal {jkey} entry {entry_id!r} is corrupt")
                if seq != prev + 1:
                    raise DataLoss(f"Redis journal {jkey} skips from seq {prev} to {seq}")
                prev = seq
                out.records.append((seq, payload))
            self._seq[name] = prev
            return out

    def names(self) -> list[str]:
        members = self._call(self._client.smembers, f"{self.prefix}:sketches")
        return sorted(m.decode() for m in members)

    def delete(self, name: str) -> None:
        skey, jkey = self._keys(name)
        with self._lock:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(skey, jkey)
            pipe.srem(f"{self.prefix}:sketches", name)
            self._call(pipe.execute)
            self._seq.pop(name, None)

    def close(self) -> None:
        self._client.close()

    def _last_seq(self, name: str) -> int:
        skey, jkey = self._keys(name)
        last = self._call(self._client.xrevrange, jkey, count=1)
        if last:
            return int(last[0][0].split(b"-")[0])
        seq = self._call(self._client.hget, skey, "seq")
        return int(seq) if seq is not None else 0


def open_store(url: str) -> StateStore:
    """``file://DIR`` or ``redis://HOST:PORT/DB`` (``rediss://`` for TLS)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not path:
            raise InvalidArgument(f"store URL {url!r} names no directory")
        return FileStore(path)
    if parsed.scheme in ("redis", "rediss"):
        return RedisStore(url)
    raise InvalidArgument(f"store URL {url!r} must start with file:// or redis:// (or rediss://)")
