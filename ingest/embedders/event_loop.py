"""An event loop of our own in a daemon thread, for clients whose I/O is async but
whose callers are ordinary (and several) threads: the TEI embedder's."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine, TypeVar

import httpx

from ingest.errors import EmbedderError

T = TypeVar("T")


class LoopThread:
    """An event loop of our own in a daemon thread, so sync callers in any thread
    can drive async I/O without owning (or blocking) an event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tei-embedder", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise EmbedderError("TEIEmbedder's sync methods cannot run on its own event loop; await aembed_passages")
        future = self.submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise EmbedderError("the embedder was closed while this call was waiting for the server") from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: stop the requests we no longer wait for
            raise

    def shutdown(self, client: httpx.AsyncClient) -> None:
        """Cancel the calls in flight (their callers get an EmbedderError, not a wait for
        ever), close `client`'s connections, then stop the loop and its thread."""
        if self.loop.is_closed():
            return
        if threading.current_thread() is self.thread:  # garbage-collected on our own loop
            self.loop.stop()
            return
        if self.thread.is_alive():
            try:
                self.run(_cancel_others())
                self.run(client.aclose())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


async def _cancel_others() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def gather_all(coros: Any) -> None:
    """Await all; on the first failure cancel the rest instead of leaving them running."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
