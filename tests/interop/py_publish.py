"""Publishes N segments with Livepeer's TricklePublisher.

After the first 3 segments it waits for one line on stdin per segment, so the
reader on the other side sets the pace (it stays inside the server's ring).
"""
import asyncio
import sys

from livepeer_gateway.trickle_publisher import TricklePublisher
from py_common import payload


async def main(url: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    pub = TricklePublisher(url, "video/MP2T")
    for seq in range(count):
        if seq >= 3:
            await loop.run_in_executor(None, sys.stdin.readline)
        seg = await pub.next()
        data = payload(seq)
        for off in range(0, len(data), 16384):
            await seg.write(data[off : off + 16384])
        await seg.close()
        print(f"published {seg.seq()} {len(data)}", flush=True)
    # Let the last POST complete before closing (close deletes the channel).
    await asyncio.sleep(0.5)
    await pub.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
