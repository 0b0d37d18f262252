"""Repository-wide pytest set-up: nbval reads the kernel's output while a cell runs.

nbval (0.11) waits for a cell's reply on the shell channel without reading the iopub channel, and reads the
cell's outputs only afterwards. A chapter cell that trains with fastai's progress bar sends thousands of
display updates; past ZeroMQ's high-water mark (about 1,000 queued messages) the kernel drops the newest ones,
the cell's final `idle` status among them, and nbval fails the cell with "Timeout of 5 seconds exceeded waiting
for output" (nbval issues #136 and #231). Here, while nbval waits for the reply, the iopub messages are moved
into a backlog as they arrive, and nbval's later reads take the backlog first, in order. Nothing else changes.
No library does this: nbval has no option for it.
"""
from __future__ import annotations

import collections
import time
from queue import Empty

_POLL_S = 0.05   # how long one wait on the shell channel lasts before iopub is drained again


def _backlog(kernel) -> collections.deque:
    return kernel.__dict__.setdefault("_iopub_backlog", collections.deque())


def _drain_iopub(kernel) -> None:
    backlog = _backlog(kernel)
    while True:
        try:
            backlog.append(kernel.kc.get_iopub_msg(timeout=0))
        except Empty:
            return


def _patch_nbval() -> None:
    try:
        from nbval.kernel import RunningKernel
    except ImportError:   # nbval not installed: nothing to patch
        return
    if getattr(RunningKernel, "_drains_iopub", False):
        return
    read_channel = RunningKernel.get_message

    def get_message(self, stream, timeout=None):
        backlog = _backlog(self)
        if stream == "iopub" and backlog:
            return backlog.popleft()
        return read_channel(self, stream, timeout=timeout)

    def await_reply(self, msg_id, timeout=None):
        # nbval's own loop, with the iopub channel read between short waits on the shell channel. As in nbval,
        # `timeout` bounds the wait for each shell message and raises queue.Empty when it passes.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            _drain_iopub(self)
            try:
                msg = self.kc.get_shell_msg(timeout=_POLL_S)
            except Empty:
                if deadline is not None and time.monotonic() > deadline:
                    raise
                continue
            deadline = None if timeout is None else time.monotonic() + timeout
            if msg["parent_header"].get("msg_id") == msg_id:
                _drain_iopub(self)
                if msg["content"]["status"] == "aborted":
                    raise RuntimeError("Kernel aborted execution request")
                return

    RunningKernel.get_message = get_message
    RunningKernel.await_reply = await_reply
    RunningKernel._drains_iopub = True


def pytest_configure(config):
    _patch_nbval()
