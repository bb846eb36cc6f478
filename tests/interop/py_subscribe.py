"""Reads N segments with Livepeer's TrickleSubscriber and saves each to OUTDIR/<seq>.

Prints one line per segment so the publisher can pace itself on it.
"""
import asyncio
import os
import sys

from livepeer_gateway.trickle_subscriber import TrickleSubscriber


async def main(url: str, count: int, outdir: str) -> None:
    sub = TrickleSubscriber(url, start_seq=0)
    got = 0
    try:
        while got < count:
            seg = await sub.next()
            if seg is None:
                break
            reader = seg.make_reader()
            data = bytearray()
            while True:
                chunk = await reader.read()
                if chunk is None:
                    break
                data += chunk
            await seg.close()
            with open(os.path.join(outdir, str(seg.seq())), "wb") as f:
                f.write(data)
            got += 1
            print(f"got {seg.seq()} {len(data)}", flush=True)
    finally:
        await sub.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
