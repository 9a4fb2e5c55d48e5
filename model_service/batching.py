"""Micro-batching: requests that wait at the same moment are processed in one call.

A model's `predict_proba` costs about the same for 1 row as for 100: most of it is a fixed
cost per call. So when several requests are in flight at once, the service scores them
together and stores them in one transaction, and each one gets its own answer back.

How a batch forms (no timer, no background thread):

* A request that finds nobody working becomes the *leader*: it lets every other request
  that is ready to run join the queue (`gather`), takes up to `max_batch_size` of them,
  including itself, processes them in one call, and hands each its result.
* A request that finds a leader at work waits in the queue. When the leader is done, it
  passes the lead to the first request still waiting, which processes the next batch.

So a lone request is processed at once (a batch of one), and under load the batches grow
by themselves to the number of requests that arrived while the previous batch ran.

    batcher = MicroBatcher(process=lambda items: [item * 2 for item in items])
    batcher.submit(21)  # -> 42, from any number of threads or greenlets at once
"""

import threading
import time
from collections import deque


class BatchAbandoned(Exception):
    """The request that was processing this batch stopped (its greenlet was killed)."""


class BatchTimeout(Exception):
    """A request waited longer than its timeout for its batch."""


class BatchOverloaded(Exception):
    """The queue already holds `max_waiting` requests: this one is refused at once."""


class _Ticket:
    """One submitted item, and what it is waiting for."""

    __slots__ = ("item", "ready", "leads", "result", "error")

    def __init__(self, item):
        self.item = item
        self.ready = threading.Event()  # set when the result is in, or the lead is passed
        self.leads = False  # True when this ticket must process the next batch
        self.result = self.error = None

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class MicroBatcher:
    """Runs `process(items) -> results` over whatever is waiting, at most `max_batch_size`.

    `process` takes a list and returns a list of the same length, in the same order. If it
    raises, every item of that batch gets the exception, and so does every item that was
    waiting for the next batch. `gather` is called by a leader
    before it takes a batch, to let requests that are ready to run join it: under gevent
    that is `gevent.idle` (every ready greenlet runs first), with threads `time.sleep(0)`.
    `on_batch(size)` is told the size of every batch (for metrics). `wait_timeout` bounds,
    in seconds, how long a request waits for the batches ahead of it. `max_waiting` (None:
    no bound) is the most requests that may wait while a batch runs: past it, `submit`
    raises BatchOverloaded at once rather than let the request wait into its timeout.
    """

    def __init__(
        self,
        process,
        max_batch_size=64,
        gather=None,
        on_batch=None,
        wait_timeout=None,
        max_waiting=None,
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.process = process
        self.max_batch_size = max_batch_size
        self.gather = gather or (lambda: time.sleep(0))
        self.on_batch = on_batch or (lambda size: None)
        self.wait_timeout = wait_timeout
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting = deque()
        self._busy = False  # a leader is at work

    def submit(self, item):
        """Process item with whatever else is waiting; return its result or raise its error.

        Raises BatchTimeout after `wait_timeout` seconds of waiting for another leader's
        batch (never while this call processes a batch itself), BatchAbandoned if the
        request processing its batch was killed before it finished, BatchOverloaded at
        once when `max_waiting` requests already wait.
        """
        timeout = self.wait_timeout
        ticket = _Ticket(item)
        with self._lock:
            if self._full():
                raise BatchOverloaded(f"{len(self._waiting)} requests already wait their turn")
            self._waiting.append(ticket)
            ticket.leads = not self._busy
            self._busy = True
        if not ticket.leads and not ticket.ready.wait(timeout) and self._withdraw(ticket):
            raise BatchTimeout(f"no batch took this request within {timeout} s")
        if ticket.leads:
            self._lead(ticket)
        return ticket.outcome()

    def overloaded(self):
        """True while the queue is at its bound: a new request would be refused."""
        with self._lock:
            return self._full()

    def _full(self):
        # Waiting requests are queued only while a leader is at work; a lone one leads.
        return (
            self.max_waiting is not None and self._busy and len(self._waiting) >= self.max_waiting
        )

    def _withdraw(self, ticket):
        """Take a ticket that timed out out of the queue; False if it is too late for that."""
        with self._lock:
            if ticket.leads or ticket.ready.is_set():
                return False  # it got the lead or its result meanwhile
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            # Already in a batch that runs now: its result will go unread.
            return True

    def _lead(self, ticket):
        """Process one batch (this ticket is its first item), then pass the lead on."""
        batch = []
        try:
            self.gather()
            with self._lock:
                count = min(len(self._waiting), self.max_batch_size)
                batch = [self._waiting.popleft() for _ in range(count)]
            self._run(batch)
        finally:  # also when this greenlet or thread is being killed
            with self._lock:
                if ticket in self._waiting:  # killed before it took its batch
                    self._waiting.remove(ticket)
                if self._waiting:
                    successor = self._waiting[0]
                    successor.leads = True
                    successor.ready.set()
                else:
                    self._busy = False
            for stranded in batch:  # killed while processing: fail them now, not at timeout
                if not stranded.ready.is_set():
                    stranded.error = BatchAbandoned("the batch was abandoned before its end")
                    stranded.ready.set()

    def _run(self, batch):
        self.on_batch(len(batch))
        try:
            results = self.process([ticket.item for ticket in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"process returned {len(results)} results for {len(batch)}")
        except Exception as error:
            self._fail(batch, error)
            return
        for ticket, result in zip(batch, results, strict=True):
            ticket.result = result
            ticket.ready.set()

    def _fail(self, batch, error):
        """Give the batch's failure to its items, and to the items that queued meanwhile.

        What fails a whole batch is what the batch depends on (the database, say), not one
        of its items. Rather than wait through the same failure again in the next batch,
        the requests that queued up during this one share it now: so no request waits
        longer than about one batch for its answer, even while the database hangs.
        """
        with self._lock:
            batch = batch + list(self._waiting)
            self._waiting.clear()
        for ticket in batch:
            ticket.error = error
            ticket.ready.set()
