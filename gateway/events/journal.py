"""The on-disk journal (and spool) of usage events: what makes a SIGKILL or a database outage lose nothing.

Every event is appended (one `write` of one JSON line, no fsync: it survives the process, which is
what a SIGKILL or an OOM kill takes) to this process's open segment before the response's last byte
leaves. A segment is a file `journal-<time>-<pid>-<seq>.jsonl` in `events.spool_dir`, created under
another name, locked with `flock` and only then renamed, so that a process scanning the directory
never takes a live process's segment for an orphan.

    open segment ──(full, or the database failed)──► sealed ──(all rows committed)──► unlinked
    a dead process's segments (unlocked at start) ─► sealed, to replay

A segment whose rows all reached the database from memory is emptied (the open one) or unlinked (a
sealed one); otherwise it is replayed from disk, in order. Replays are idempotent: the stores ignore
a request id they already hold. A row the database refuses for what it holds is set aside, with the
reason, in `rejected.jsonl` beside the segments: kept for an operator, never replayed nor removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.events.record import Row, row_from_json

log = logging.getLogger("gateway.events")
SEGMENT_GLOB = "journal-*.jsonl"
SEGMENT_ROWS = 20_000  # an open segment is sealed at this many rows
REJECTED_FILE = "rejected.jsonl"


@dataclass(eq=False)
class Segment:
    path: Path
    fd: int
    appended: int = 0
    committed: int = 0
    replay: bool = False  # some rows must come from disk: memory dropped them or they predate this process
    sealed: bool = False

    @property
    def done(self) -> bool:
        return not self.replay and self.committed >= self.appended

    def size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError:
            return 0

    def rows(self) -> Iterator[Row]:
        with open(self.path, "rb") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = row_from_json(orjson.loads(line))
                except orjson.JSONDecodeError:
                    row = None
                if row is None:
                    log.error("usage journal %s: line %d is not a row and was skipped", self.path.name, number)
                else:
                    yield row


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Journal:
    def __init__(self, directory: Path, segment_rows: int = SEGMENT_ROWS) -> None:
        self.directory = directory
        self.segment_rows = segment_rows
        self.sealed: list[Segment] = []  # oldest first
        self._seq = 0
        directory.mkdir(parents=True, exist_ok=True)
        self.current = self._new_segment()

    def _new_segment(self) -> Segment:
        self._seq += 1
        name = f"journal-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}"
        staging = self.directory / f"{name}.new"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.directory / f"{name}.jsonl"
        os.rename(staging, path)
        return Segment(path, fd)

    def adopt_orphans(self) -> int:
        """Segments left by processes that died (nobody holds their lock) are taken over for replay.
        Returns how many rows they hold."""
        rows = 0
        for stale in self.directory.glob("journal-*.new"):
            fd = os.open(stale, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _lock(fd):
                    stale.unlink(missing_ok=True)  # created but never renamed: always empty
            finally:
                os.close(fd)
        for path in sorted(self.directory.glob(SEGMENT_GLOB)):
            if path == self.current.path or any(s.path == path for s in self.sealed):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if not _lock(fd):
                os.close(fd)  # a live process's segment
                continue
            segment = Segment(path, fd, replay=True, sealed=True)
            with open(path, "rb") as lines:
                segment.appended = sum(1 for line in lines if line.strip())
            rows += segment.appended
            self.sealed.append(segment)
        self.sealed.sort(key=lambda s: s.path.name)
        return rows

    def append(self, line: bytes) -> Segment:
        segment = self.current
        os.write(segment.fd, line + b"\n")
        segment.appended += 1
        if segment.appended >= self.segment_rows:
            self.rotate()
        return segment

    def set_aside(self, line: bytes) -> Path:
        """Appends a line to the file of refused rows (shared by the processes on this spool: one
        O_APPEND write a line); returns its path."""
        path = self.directory / REJECTED_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line + b"\n")
        finally:
            os.close(fd)
        return path

    def rotate(self) -> None:
        """Seals the open segment (unless it is empty) and opens a new one."""
        segment = self.current
        if segment.appended == 0:
            return
        segment.sealed = True
        self.sealed.append(segment)
        self.current = self._new_segment()

    def committed(self, segment: Segment, rows: int) -> None:
        segment.committed += rows
        self.release_done()

    def release_done(self) -> None:
        """Unlinks sealed segments whose rows are all in the database; empties the open one if so."""
        for segment in [s for s in self.sealed if s.done]:
            self._remove(segment)
        current = self.current
        if current.appended and current.done:
            os.ftruncate(current.fd, 0)  # O_APPEND: the next line goes to the (new) end
            current.appended = current.committed = 0

    def replayed(self, segment: Segment) -> None:
        self._remove(segment)

    def _remove(self, segment: Segment) -> None:
        segment.path.unlink(missing_ok=True)
        os.close(segment.fd)
        self.sealed.remove(segment)

    def to_replay(self) -> list[Segment]:
        return [s for s in self.sealed if s.replay]

    def pending_bytes(self) -> int:
        return sum(s.size() for s in self.sealed) + self.current.size()

    def pending_segments(self) -> int:
        return len(self.sealed) + (1 if self.current.appended else 0)

    def close(self) -> None:
        """Releases the locks; whatever is still on disk is replayed by the next process to start."""
        self.release_done()
        current = self.current
        os.close(current.fd)
        if current.appended == 0:
            current.path.unlink(missing_ok=True)
        for segment in self.sealed:
            os.close(segment.fd)
        self.sealed.clear()
