"""Pre-generated reader key pairs, made in separate processes.

Every guest reader needs a fresh RSA key pair. Generating one takes 30-50 ms
for 2048 bits on these machines (several times that for 4096) and OpenSSL,
called through `cryptography`, holds the GIL while it does: in a thread of the
gateway it would stall the event loop and every SMTP session with it
(measured: 60-100 ms stalls). So helper processes generate them ahead of need
and the pool hands them out; when a burst empties the pool, the sealing thread waits
for the helper's next key rather than generating one in this process.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gateway.envelope.keys import KeyPair, generate_key_pair

log = logging.getLogger("sealgate.keypool")

_BATCH = 4


class KeyPoolError(RuntimeError):
    """No key pair could be handed out: the pool is closed, its helper failed, or it timed out."""


def _generate_batch(bits: int, count: int) -> list[tuple[bytes, bytes]]:
    pairs = (generate_key_pair(bits) for _ in range(count))
    return [(pair.private_der, pair.public_der) for pair in pairs]


class KeyPool:
    """Keeps up to ``size`` key pairs of ``bits`` bits ready; thread-safe.

    One helper process makes about 30 RSA-2048 keys a second on these machines;
    ``processes`` helpers make that many times more, at the cost of CPU the
    SMTP side may need.
    """

    def __init__(self, bits: int, size: int, processes: int = 1) -> None:
        self.bits = bits
        self.size = size
        self.processes = processes
        self._ready: collections.deque[KeyPair] = collections.deque()
        self._pending: list[Future[list[tuple[bytes, bytes]]]] = []
        # Re-entrant: a future that is already done runs its callback at once,
        # in the thread that added it, which holds the lock.
        self._lock = threading.RLock()
        self._available = threading.Condition(self._lock)
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        self._failure: BaseException | None = (
            None  # the last batch's error, until the next batch is queued
        )

    def start(self) -> None:
        """Start filling the pool; with size 0 the helper starts at the first :meth:`take`."""
        with self._lock:
            if self._closed:
                raise KeyPoolError("the key pool was closed")
            if self._executor is None:
                self._executor = self._new_executor()
            self._refill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            self._ready.clear()
            self._available.notify_all()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    @property
    def ready(self) -> int:
        return len(self._ready)

    def take(self, timeout: float = 60.0) -> KeyPair:
        """A fresh key pair; blocks (off the event loop) while the pool is empty."""
        self.start()
        with self._available:
            self._refill(extra=1)
            if not self._available.wait_for(
                lambda: self._ready or self._failure or self._closed, timeout
            ):
                raise KeyPoolError("no reader key pair became ready in time")
            if not self._ready:
                raise KeyPoolError(
                    f"no reader key pair: {self._failure or 'the key pool was closed'}"
                )
            pair = self._ready.popleft()
            self._refill()
            return pair

    def _refill(self, extra: int = 0) -> None:
        """Ask the helper for more keys so that ready + pending reaches size (+ extra).

        Called with the lock held.
        """
        if self._executor is None:
            return
        pending = sum(1 for future in self._pending if not future.done()) * _BATCH
        missing = self.size + extra - len(self._ready) - pending
        while missing > 0:
            future = self._submit()
            future.add_done_callback(self._collect)
            self._pending.append(future)
            missing -= _BATCH

    def _submit(self) -> Future[list[tuple[bytes, bytes]]]:
        """Queue one batch; a helper that died while the pool was idle is replaced."""
        assert self._executor is not None
        self._failure = None  # a new batch is on its way; waiters wait for it
        try:
            return self._executor.submit(_generate_batch, self.bits, _BATCH)
        except BrokenProcessPool:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
            return self._executor.submit(_generate_batch, self.bits, _BATCH)

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(max_workers=self.processes, mp_context=context)

    def _collect(self, future: Future[list[tuple[bytes, bytes]]]) -> None:
        with self._available:
            if future in self._pending:
                self._pending.remove(future)
            if future.cancelled() or self._executor is None:
                return
            error = future.exception()
            if error is not None:
                log.error("key generation failed: %s", error)
                if isinstance(error, BrokenProcessPool):
                    # The helper died; the next start() or take() starts a new one.
                    broken, self._executor = self._executor, None
                    broken.shutdown(wait=False, cancel_futures=True)
                self._failure = error
                self._available.notify_all()
                return
            self._ready.extend(KeyPair(private, public) for private, public in future.result())
            self._available.notify_all()
