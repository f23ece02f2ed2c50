"""The group worker: everything gathered is handled together, and nothing twice, even when stopped mid-group."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from qortex.resilience.group_worker import GroupWorker


@dataclass
class Item:
    name: str
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SlowRecorder(GroupWorker[Item]):
    """Handles items one by one, yielding between them, and records every handling."""

    def __init__(self) -> None:
        super().__init__(name="test-recorder", max_group=100)
        self.handled: list[str] = []
        self.first_handled = asyncio.Event()

    async def handle(self, group: list[Item]) -> None:
        for item in group:
            self.handled.append(item.name)
            item.done.set_result(None)
            self.first_handled.set()
            await asyncio.sleep(0.01)


async def test_items_put_together_are_handled_as_one_group() -> None:
    worker = SlowRecorder()
    items = [Item(str(n)) for n in range(5)]
    for item in items:
        worker.put(item)
    worker.start()
    await asyncio.gather(*(item.done for item in items))
    await worker.stop()
    assert worker.handled == ["0", "1", "2", "3", "4"]


async def test_stopping_mid_group_handles_the_rest_once_and_nothing_twice() -> None:
    worker = SlowRecorder()
    items = [Item(str(n)) for n in range(4)]
    for item in items:
        worker.put(item)
    worker.start()
    await worker.first_handled.wait()
    await worker.stop()
    assert sorted(worker.handled) == ["0", "1", "2", "3"]
    assert all(item.done.done() for item in items)
