"""The same transfer as benches/trickle.rs, done by Livepeer's Python SDK:
one TricklePublisher and one TrickleSubscriber in one process, the publisher
kept at most 3 segments ahead. Prints a JSON line with bytes, wall and CPU seconds.
"""
import asyncio
import json
import os
import sys
import time

from livepeer_gateway.trickle_publisher import TricklePublisher
from livepeer_gateway.trickle_subscriber import TrickleSubscriber


async def main(url: str, segments: int, segment_bytes: int, chunk: int) -> None:
    window = asyncio.Semaphore(3)
    block = bytes(range(256)) * (chunk // 256)
    received = 0

    async def read() -> None:
        nonlocal received
        sub = TrickleSubscriber(url, start_seq=0)
        got = 0
        while got < segments:
            seg = await sub.next()
            if seg is None:
                break
            r = seg.make_reader()
            while True:
                c = await r.read()
                if c is None:
                    break
                received += len(c)
            await seg.close()
            got += 1
            window.release()
        await sub.close()

    t0, wall0 = os.times(), time.monotonic()
    reader = asyncio.create_task(read())
    pub = TricklePublisher(url, "video/MP2T", start_seq=0)
    for _ in range(segments):
        await window.acquire()
        seg = await pub.next()
        sent = 0
        while sent < segment_bytes:
            await seg.write(block)
            sent += len(block)
        await seg.close()
    await reader
    t1 = os.times()
    wall = time.monotonic() - wall0
    user, system = t1.user - t0.user, t1.system - t0.system
    await pub.close()
    print(json.dumps({"bytes": received, "wall_s": wall, "cpu_s": user + system, "user_s": user}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
