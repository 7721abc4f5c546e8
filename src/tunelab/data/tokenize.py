"""Batched tokenisation, the over-length policy (never silent), and the worker processes a
long preparation renders and tokenises with.

The prompt (rendered with the generation prompt) and each answer are tokenised separately and
concatenated, every answer ending with the end-of-turn token (data/build.py, data/conversation.py):
generation at evaluation time then starts exactly where the trained answer started. Batched
through the fast tokenizer.

Why processes: templating and rendering (Jinja, Python) are most of a preparation's work besides
the tokenizer, and one Python process runs them on one core; the tokenizer's own thread pool
only parallelises its part. `Workers` runs chunks of records in `data.num_proc` processes (fork
where the platform has it), each with a one-thread tokenizer (2 processes x 2 threads on 2 cores
would fight), and hands the results back in submission order with a bounded number in flight.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal

from tunelab.data.errors import BadRecord

IGNORE_INDEX = -100


@contextlib.contextmanager
def tokenizer_threads(num_proc: int | None):
    """Let the fast tokenizer's batch calls use every core (num_proc None or > 1) for the block,
    and the data/stream.py preparations in it use `num_proc` worker processes (`worker_count`).
    The CLI turns its threads off (cli/quiet.py: TOKENIZERS_PARALLELISM=false, so that a fork
    after tokenising does not warn); the Rust library reads the variable at each call."""
    from tunelab.config.env import usable_cpus

    n = num_proc if num_proc is not None else usable_cpus()
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if n > 1 else "false"
    _NUM_PROC.append(num_proc)
    try:
        yield
    finally:
        _NUM_PROC.pop()
        _restore(before)


_NUM_PROC: list = []  # data.num_proc of the preparation under way (tokenizer_threads), for worker_count


def worker_count(num_proc: int | None = None) -> int:
    """Processes a preparation uses: `num_proc`, else the data.num_proc of the enclosing
    `tokenizer_threads`, else (or when that is None) every usable CPU."""
    from tunelab.config.env import usable_cpus

    if num_proc is None and _NUM_PROC:
        num_proc = _NUM_PROC[-1]
    return num_proc if num_proc is not None else usable_cpus()


_STATE = None  # a worker's state: the parent's (inherited at fork) or built from the arguments (spawn)


def _start(build, args) -> None:
    global _STATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops, then them
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process: the processes are the parallelism
    if _STATE is None:
        _STATE = build(*args)


def _call(fn, chunk):
    try:
        return fn(_STATE, chunk)
    except BadRecord as exc:  # its (where, reason) arguments do not survive pickling: sent as a tuple
        return _Raised((exc.where, exc.reason))


class _Raised(tuple):
    pass


class Workers:
    """`processes` worker processes, created once per preparation: `map(fn, chunks)` yields
    `fn(state, chunk)` for each chunk in order, `state` being `build(*args)`: built here once
    (its errors come from here) and inherited at fork, or built in each worker where the platform
    has no fork (spawn pickles `args`). At most two chunks per process are in flight, so memory
    stays a few chunks whatever the file. A worker that dies (killed, out of memory) is an error
    here, not a hang. `processes` 1: the chunks run here, one after another (same results)."""

    def __init__(self, processes: int, build, args: tuple):
        global _STATE
        self.processes, self.pool, self.state = processes, None, build(*args)
        if processes <= 1:
            return
        from concurrent.futures import ProcessPoolExecutor

        fork = "fork" in multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if fork else "spawn")
        before = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # inherited at fork: no "forked after parallelism" warning
        _STATE = self.state if fork else None
        try:
            self.pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start, initargs=(build, args))
            for _ in self.pool.map(int, range(processes)):  # start them now, while _STATE is set
                pass
        finally:
            _STATE = None
            _restore(before)

    def map(self, fn, chunks):
        if self.pool is None:
            yield from (fn(self.state, chunk) for chunk in chunks)
            return
        pending: collections.deque = collections.deque()
        chunks = iter(chunks)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except Exception:  # reading failed: the chunks before it first, as one process would
                while pending:
                    yield _result(pending.popleft().result())
                raise
            pending.append(self.pool.submit(_call, fn, chunk))
            if len(pending) >= 2 * self.processes:
                yield _result(pending.popleft().result())
        while pending:
            yield _result(pending.popleft().result())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)  # also when a bad record stopped it half-way
            self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _result(value):
    if isinstance(value, _Raised):
        raise BadRecord(*value)
    return value


def _restore(before: str | None) -> None:
    if before is None:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
    else:
        os.environ["TOKENIZERS_PARALLELISM"] = before


def encode_batch(tokenizer, texts: list[str], batch_size: int = 1024) -> list[list[int]]:
    """`tokenizer(texts, add_special_tokens=False)["input_ids"]`, a batch at a time; straight
    through the fast tokenizer's Rust backend when that gives the same ids (no truncation or
    padding set on it, special tokens split as the wrapper would): a fifth less time than the
    wrapper, which also builds offsets and masks that are thrown away."""
    backend = _backend(tokenizer)
    ids: list[list[int]] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        if backend is not None:
            ids.extend(e.ids for e in backend.encode_batch_fast(chunk, add_special_tokens=False))
        else:
            ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return ids


def _backend(tokenizer):
    backend = getattr(tokenizer, "_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    if backend.encode_special_tokens != bool(getattr(tokenizer, "split_special_tokens", False)):
        return None
    return backend


def bos_prefix(tokenizer, use_chat: bool) -> list[int]:
    """Plain-format prompts get the BOS the tokenizer would add itself (chat templates write it)."""
    if use_chat or tokenizer.bos_token_id is None:
        return []
    ids = tokenizer("a")["input_ids"]
    return [tokenizer.bos_token_id] if ids and ids[0] == tokenizer.bos_token_id else []


def apply_length_policy(prompt_ids: list[int], target_ids: list[int], max_length: int,
                        policy: str) -> tuple[list[int] | None, bool, str | None]:
    """(kept prompt ids or None if rejected, truncated?, reason for rejection)."""
    total = len(prompt_ids) + len(target_ids)
    if total <= max_length:
        return prompt_ids, False, None
    if policy == "reject":
        return None, False, f"{total} tokens > max_length {max_length}"
    room = max_length - len(target_ids)
    if room < 1:
        return None, False, f"the answer alone has {len(target_ids)} tokens (max_length {max_length})"
    return prompt_ids[-room:], True, None
