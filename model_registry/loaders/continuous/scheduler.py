"""One model's running generation batch, and the loop that drives it.

One thread per model runs, again and again: admit waiting requests while the
batch has room (round-robin between accounts, each within its share); prefill
the admitted prompts one chunk at a time (PREFILL_CHUNK_TOKENS per chunk, so a
long prompt delays the running sequences by one chunk's pass per step, not by
its whole length); then one decoding step for every running sequence. A
sequence that ends (end-of-text, a stop string, its max tokens, its client
gone, its deadline) leaves the batch at that step, and a request is answered
as soon as its last choice ends, not when the batch does.

Bounds, checked at admission: at most `max_running` sequences (a request's n
choices are n), and a KV cache of at most `kv_cache_bytes` for the sequences
together, reckoned for the worst case (every row padded to the longest prompt
plus max tokens among them), so a batch admitted never runs out mid-way. A
request too large to run even alone is refused at submit (400); the others
wait in the queue, which is shared between accounts like a Batcher's (429 over
an account's share, core/fair_queue.py). While several accounts have work on
the model, each may hold at most its share of the running sequences: a flood
cannot take every slot while another account waits (running sequences are not
preempted: the other account's request joins as soon as one of the flood's
ends, at most its max tokens later).

A model's exception fails the requests whose sequences were in that pass (the
details in the log with the request id, like the Batcher); the loop goes on
with the next requests.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import torch

from core.errors import ApiError, BadRequest, ModelUnavailable
from core.fair_queue import FairQueue
from core.request_context import current_account, current_request_id

from ...batcher import DeadlineExceeded, PredictionFailed, refuse_over_share
from ..common import GenerationLimits
from ..completion import CANCELLED, Completion, CompletionRequest, Row
from .kv_batch import KVBatch, positions
from .sampling import next_tokens

log = logging.getLogger(__name__)


class _Job:
    """One submit: its requests, answered together through one future."""

    def __init__(self, requests: list, deadline: float, convert: Callable[[list[Completion]], list] | None):
        self.future: Future = Future()
        self.deadline = deadline
        self.convert = convert
        self.account = current_account.get()
        self.request_id = current_request_id.get()
        self.entries = [_Entry(self, request) for request in requests]
        self.open_entries = len(self.entries)
        self.abandoned = False  # its blocking caller stopped waiting

    def finished(self) -> bool:
        return self.abandoned or self.future.done()


class _Entry:
    """One request of a job in the queue and, once admitted, its rows."""

    def __init__(self, job: _Job, request: CompletionRequest):
        self.job = job
        self.request = request
        self.items = range(request.n)  # what FairQueue counts: the sequences it will take
        self.rows: list[Row] = []
        self.open_rows = 0

    @property
    def horizon(self) -> int:
        """The longest its rows can grow: prompt plus max tokens."""
        return len(self.request.prompt_ids) + self.request.max_tokens


class _Prefill:
    """Admitted prompts, left-padded into one batch, fed to the model a chunk of
    columns at a time; the last chunk's logits give each prompt's first token."""

    def __init__(self, entries: list[_Entry], pad_id: int, device):
        self.entries = entries
        width = max(len(entry.request.prompt_ids) for entry in entries)
        self.ids = torch.tensor([[pad_id] * (width - len(e.request.prompt_ids)) + e.request.prompt_ids
                                 for e in entries], dtype=torch.long, device=device)
        self.attention = torch.tensor([[0] * (width - len(e.request.prompt_ids)) + [1] * len(e.request.prompt_ids)
                                       for e in entries], dtype=torch.long, device=device)
        self.positions = positions(self.attention)
        self.done = 0  # columns already in the cache
        self.cache = None

    def chunk(self, model, chunk_tokens: int, extra: dict) -> torch.Tensor | None:
        """Feed the next chunk; the prompts' last logits once the whole is in."""
        width = self.ids.shape[1]
        start, end = self.done, min(width, self.done + max(1, chunk_tokens // len(self.entries)))
        out = model(
            input_ids=self.ids[:, start:end], attention_mask=self.attention[:, :end],
            position_ids=self.positions[:, start:end], past_key_values=self.cache, use_cache=True, **extra,
        )
        self.cache, self.done = out.past_key_values, end
        return out.logits[:, -1] if end == width else None


class GenerationScheduler:
    def __init__(self, engine, name: str, limits: GenerationLimits,
                 on_step: Callable[[int, float], None] | None = None, clock: Callable[[], float] = time.monotonic):
        # `engine`: model, device, pad_id, eos_ids, decode, token_bytes, forward_extra (loaders/completion.py).
        self._engine = engine
        self.name = name
        self.limits = limits
        self._on_step = on_step or (lambda rows, seconds: None)
        self._clock = clock
        self._eos = sorted(engine.eos_ids)
        self._queue = FairQueue()
        self._ready = threading.Condition()
        self._closed = False
        self._running: KVBatch | None = None
        self._prefill: _Prefill | None = None
        self._rows_of: Counter = Counter()  # account -> its rows admitted and not yet ended
        self._horizons: Counter = Counter()  # horizon -> rows admitted with it (for the KV bound)
        self._admitted: set[_Entry] = set()  # entries admitted whose rows have not all ended
        self._thread = threading.Thread(target=self._work, name=f"generation-{name}", daemon=True)
        self._thread.start()

    # ---- the caller's side --------------------------------------------------------

    def submit(self, requests: list[CompletionRequest], timeout_s: float, convert=None) -> list:
        job = self._queued(requests, timeout_s, convert)
        try:
            return job.future.result(timeout=timeout_s)
        except FutureTimeout:
            job.abandoned = True  # its sequences leave at their next step
            job.future.cancel()
            raise DeadlineExceeded(
                f"Model {self.name} did not answer within {timeout_s:g}s (INFER_REQUEST_TIMEOUT_S).") from None

    def submit_nowait(self, requests: list[CompletionRequest], timeout_s: float, convert=None) -> Future:
        """The future of the requests' Completions (or of `convert(completions)`).
        Cancelling it before it starts takes it out of the queue; once running,
        its sequences stop when their requests' controls or streams say so."""
        return self._queued(requests, timeout_s, convert).future

    def _queued(self, requests: list[CompletionRequest], timeout_s: float, convert) -> _Job:
        job = _Job(requests, self._clock() + timeout_s, convert)
        for entry in job.entries:
            self._refuse_if_too_large(entry)
        with self._ready:
            if self._closed:
                raise ModelUnavailable.just_unloaded(self.name)
            refuse_over_share(self._queue, job.account, self.limits.max_queue, self.name)
            for entry in job.entries:
                self._queue.append(job.account, entry)
            self._ready.notify()
        return job

    def _refuse_if_too_large(self, entry: _Entry) -> None:
        rows, need = entry.request.n, entry.request.n * entry.horizon * self._engine.token_bytes
        if rows > self.limits.max_running or need > self.limits.kv_cache_bytes:
            raise BadRequest(
                f"This generation needs {rows} sequence(s) of up to {entry.horizon} tokens "
                f"({need / 2**20:.0f} MiB of KV cache), more than model {self.name} may run at once "
                f"(INFER_GEN_MAX_RUNNING: {self.limits.max_running}, INFER_GEN_KV_CACHE_MB: "
                f"{self.limits.kv_cache_bytes // 2**20}). Ask for fewer tokens or choices, or send a shorter prompt.")

    def close(self) -> None:
        """Refuse new requests; the loop ends once those admitted and queued are done."""
        with self._ready:
            self._closed = True
            self._ready.notify()

    def queued(self) -> int:
        return len(self._queue)

    def running(self) -> int:
        return sum(self._rows_of.values())

    # ---- admission (with the lock held) -------------------------------------------

    def _admit(self) -> list[_Entry]:
        admitted = []
        while True:
            entry = self._queue.pop_next(self._still_wanted, self._fits, self._within_share)
            if entry is None:
                return admitted
            self._rows_of[entry.job.account] += entry.request.n
            self._horizons[entry.horizon] += entry.request.n
            self._admitted.add(entry)
            admitted.append(entry)

    def _fits(self, entry: _Entry) -> bool:
        rows = sum(self._horizons.values())
        if rows == 0:
            return True  # alone it fits: _refuse_if_too_large saw to that
        rows += entry.request.n
        horizon = max(entry.horizon, *self._horizons)
        return (rows <= self.limits.max_running
                and rows * horizon * self._engine.token_bytes <= self.limits.kv_cache_bytes)

    def _within_share(self, account) -> bool:
        active = {a for a, rows in self._rows_of.items() if rows} | self._queue.waiting_accounts()
        if len(active) < 2:
            return True
        return self._rows_of[account] < max(1, self.limits.max_running // len(active))

    def _still_wanted(self, entry: _Entry) -> bool:
        job = entry.job
        if job.finished():
            return False
        if self._clock() > job.deadline:
            job.future.set_exception(DeadlineExceeded(f"Model {self.name}: dropped, past its deadline."))
            return False
        if not job.future.running():
            return job.future.set_running_or_notify_cancel()
        return True

    # ---- the loop -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._ready:
                while self._running is None and self._prefill is None and not self._queue:
                    if self._closed:
                        return
                    self._ready.wait()
                admitted = self._admit() if self._prefill is None else []
            try:
                if admitted:
                    self._prefill = _Prefill(admitted, self._engine.pad_id, self._engine.device)
                if self._prefill is not None:
                    self._prefill_chunk()
                if self._running is not None:
                    self._decode_step()
            except Exception as exc:  # outside a pass (joining, leaving, answering): fail what is in, go on
                self._running = self._prefill = None
                entries = list(self._admitted)
                self._fail([row for entry in entries for row in self._new_rows(entry)], exc)

    def _prefill_chunk(self) -> None:
        prefill = self._prefill
        engine = self._engine
        try:
            with torch.inference_mode():
                logits = prefill.chunk(engine.model, self.limits.prefill_chunk_tokens, engine.forward_extra)
                if logits is None:
                    return
                self._prefill = None
                expand = [index for index, entry in enumerate(prefill.entries) for _ in range(entry.request.n)]
                rows = [row for entry in prefill.entries for row in self._new_rows(entry)]
                tokens = next_tokens(logits[expand], rows, self._eos)
        except Exception as exc:
            self._prefill = None
            self._fail([row for entry in prefill.entries for row in self._new_rows(entry)], exc)
            return
        # A prompt with n choices was prefilled once; its cache rows are copied n times.
        picked = torch.tensor(expand, dtype=torch.long, device=prefill.attention.device)
        prefill.cache.batch_select_indices(picked)
        joining = KVBatch(prefill.cache, prefill.attention[picked], rows,
                          torch.tensor(tokens, dtype=torch.long, device=picked.device), engine.forward_extra)
        self._advance(joining, tokens)
        if len(joining) == 0:
            return
        if self._running is None:
            self._running = joining
        else:
            self._running.join(joining)

    def _new_rows(self, entry: _Entry) -> list[Row]:
        if entry.rows:
            return entry.rows
        request = entry.request
        generator = torch.Generator().manual_seed(request.seed) if request.seed is not None else None
        rows = [Row(self._engine.decode, self._engine.eos_ids, request, request.first_choice + index)
                for index in range(request.n)]
        for row in rows:
            row.generator, row.entry, row.released = generator, entry, False
        entry.rows, entry.open_rows = rows, len(rows)
        return rows

    def _decode_step(self) -> None:
        batch = self._running
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                tokens = next_tokens(batch.step(self._engine.model), batch.rows, self._eos)
        except Exception as exc:
            self._running = None
            self._fail(batch.rows, exc)
            return
        batch.set_next(tokens)
        self._on_step(len(batch), time.perf_counter() - started)
        self._advance(batch, tokens)
        if len(batch) == 0:
            self._running = None

    def _advance(self, batch: KVBatch, tokens: list[int]) -> None:
        """Give each row its token; rows that ended leave the batch, and requests
        whose rows all ended are answered."""
        ended = []
        for row, token in zip(batch.rows, tokens):
            if row.entry.job.finished():
                row.stop(CANCELLED)
            else:
                row.add(token)
            if row.done:
                ended.append(row)
        if ended:
            batch.keep([index for index, row in enumerate(batch.rows) if not row.done])
            for row in ended:
                self._ended(row)

    def _ended(self, row: Row) -> None:
        """A row ended: its slot and KV reckoning are given back, once."""
        entry = row.entry
        job = entry.job
        row.released = True
        with self._ready:
            self._rows_of[job.account] -= 1
            if not self._rows_of[job.account]:
                del self._rows_of[job.account]
            self._horizons[entry.horizon] -= 1
            if not self._horizons[entry.horizon]:
                del self._horizons[entry.horizon]
        entry.open_rows -= 1
        if entry.open_rows == 0:
            self._admitted.discard(entry)
            job.open_entries -= 1
            if job.open_entries == 0 and not job.future.done():
                self._answer(job)

    def _answer(self, job: _Job) -> None:
        completions = [Completion(len(entry.request.prompt_ids), [row.choice() for row in entry.rows])
                       for entry in job.entries]
        try:
            job.future.set_result(job.convert(completions) if job.convert else completions)
        except Exception as exc:
            self._fail_job(job, exc)

    def _fail(self, rows: list[Row], exc: Exception) -> None:
        """A pass failed: its requests fail (first, so that none is answered as if
        done), and its rows end (those that had not already)."""
        for job in {id(row.entry.job): row.entry.job for row in rows}.values():
            self._fail_job(job, exc)
        for row in rows:
            if not row.done:
                try:
                    row.stop(CANCELLED)  # its stream is told, if it can be
                except Exception:  # noqa: BLE001 - the row has ended all the same (stop sets it first)
                    log.warning("model %s: a stopped row's stream failed", self.name, exc_info=True)
            if not row.released:
                self._ended(row)

    def _fail_job(self, job: _Job, exc: Exception) -> None:
        if job.future.done():
            return
        if isinstance(exc, ApiError):
            job.future.set_exception(exc)
            return
        log.error("model %s failed on request %s", self.name, job.request_id, exc_info=exc)
        under = f" under request id {job.request_id}" if job.request_id else ""
        job.future.set_exception(PredictionFailed(
            f"Model {self.name} failed on this input; the details are in the service log{under}."))
