"""trio in a second thread of the shell: one nursery for the shell's whole life.

cmd2 owns the main thread; a command hands one coroutine to this thread
(`trio.from_thread.run`) and waits for its result.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from tools.shell.backend import ShellError

trio_start_timeout_s = 10.0

T = TypeVar("T")


# ------------------------------------------------------------------ the trio thread


class TrioThread:
    """trio.run in a daemon thread, with a nursery that stays open until stop()."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._value: Any = None
        self._error: BaseException | None = None

    def start(self, setup: Callable[[trio.Nursery], T]) -> T:
        """Start the thread; `setup(nursery)` runs in it and its result is returned."""
        self._thread = threading.Thread(target=self._run, args=(setup,), name="trio", daemon=True)
        self._thread.start()
        if not self._ready.wait(trio_start_timeout_s):
            raise RuntimeError("the trio thread did not start")
        if self._error is not None:
            raise self._error
        return self._value

    def _run(self, setup: Callable[[trio.Nursery], Any]) -> None:
        try:
            trio.run(self._main, setup)
        except BaseException as error:
            self._error = self._error or error
        finally:
            self._ready.set()

    async def _main(self, setup: Callable[[trio.Nursery], Any]) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._nursery = nursery
            try:
                self._value = setup(nursery)
            except BaseException as error:
                self._error = error
                raise
            finally:
                self._ready.set()
            await trio.sleep_forever()

    @property
    def nursery(self) -> trio.Nursery:
        """The nursery that lives as long as the thread (for tasks that must outlive a call)."""
        assert self._nursery is not None, "start() first"
        return self._nursery

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `await function(*args)` in the trio thread and return its result.
        Ctrl-C (KeyboardInterrupt in this thread) cancels it there too."""
        scope = trio.CancelScope()

        async def guarded() -> T:
            with scope:
                return await function(*args)
            raise ShellError("interrupted")

        try:
            return trio.from_thread.run(guarded, trio_token=self._token)
        except KeyboardInterrupt:
            try:
                trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
            raise
        except trio.RunFinishedError:
            raise ShellError(
                f"the shell's trio thread has stopped ({self._error!r}); restart the shell"
            ) from None

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._nursery is not None and self._thread is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._nursery.cancel_scope.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
            self._thread.join(timeout_s)
