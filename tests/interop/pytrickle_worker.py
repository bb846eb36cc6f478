"""A pytrickle 0.1.6 worker written the way a user would write one.

A `FrameProcessor` finds the test camera's ball (GStreamer `videotestsrc
pattern=ball`: a white disc on black, with a burnt-in clock) and publishes one
detection per frame through the stream client's `publish_data`, as a JSON
string (`json.dumps`): pytrickle 0.1.6 has no `FrameProcessor.publish_data`,
so the processor reaches the server's current client.

The detector mirrors src/worker/detect.rs in spirit: threshold the luminance
and keep the large bright region. Instead of labelling regions it erodes the
mask, which removes the clock's thin strokes and keeps the disc.

Each detection carries what the tests check: the frame size pytrickle handed
over (`frame_w`, `frame_h`), the parameters it was started with
(`start_params`), and how many parameter updates arrived (`param_updates`).
Stdout says what happened, one word a line, for the tests to wait on:
READY, STREAM_START, FIRST_FRAME (per stream), PARAMS, STREAM_STOP, SIGTERM,
EXITING.

Usage: pytrickle_worker.py PORT [--api]   (--api: route_prefix="/api")
On SIGTERM it stops its server and returns from main, so the interpreter
exits only once every thread pytrickle started has ended.
"""

import argparse
import asyncio
import json
import logging
import signal
import sys
import time

import torch
import torch.nn.functional as F
from pytrickle import FrameProcessor, StreamServer


class BallFinder(FrameProcessor):
    def __init__(self):
        super().__init__()
        self.server = None
        self.label = "ball"
        self.threshold = 160 / 255
        self.start_params = {}
        self.param_updates = 0
        self.frames = 0

    async def load_model(self, **kwargs):
        pass

    async def on_stream_start(self, params):
        self.start_params = dict(params)
        self.frames = 0
        self.label = params.get("label", "ball")
        print(f"STREAM_START {json.dumps(self.start_params)}", flush=True)

    async def on_stream_stop(self):
        print("STREAM_STOP", flush=True)

    async def update_params(self, params):
        self.param_updates += 1
        if "label" in params:
            self.label = params["label"]
        print(f"PARAMS {self.param_updates} {json.dumps(params)}", flush=True)

    async def process_audio_async(self, frame):
        return [frame]

    async def process_video_async(self, frame):
        self.frames += 1
        if self.frames == 1:
            print("FIRST_FRAME", flush=True)
        detection = self.detect(frame.tensor)
        client = self.server.current_client if self.server else None
        if detection is not None and client is not None:
            await client.publish_data(json.dumps(detection))
        return frame

    def detect(self, tensor):
        # pytrickle hands frames as [1, H, W, 3] floats in 0..1.
        rgb = tensor[0] if tensor.dim() == 4 else tensor
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        mask = (luma >= self.threshold).float()[None, None]
        # Erosion by a 7x7 square: min-pool as -max_pool(-x).
        core = -F.max_pool2d(-mask, kernel_size=7, stride=1, padding=3)
        ys, xs = torch.nonzero(core[0, 0] > 0.5, as_tuple=True)
        if len(xs) == 0:
            return None
        # Grow the eroded core back by the erosion radius.
        x0, x1 = max(int(xs.min()) - 3, 0), min(int(xs.max()) + 4, w)
        y0, y1 = max(int(ys.min()) - 3, 0), min(int(ys.max()) + 4, h)
        box = [round(x0 / w, 4), round(y0 / h, 4), round(x1 / w, 4), round(y1 / h, 4)]
        return {
            "type": "detection",
            "timestamp": int(time.time() * 1000),
            "label": self.label,
            "confidence": 1.0,
            "box": box,
            "boxes": [{"label": self.label, "confidence": 1.0, "box": box}],
            "frame_w": w,
            "frame_h": h,
            "start_params": self.start_params,
            "param_updates": self.param_updates,
        }


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--api", action="store_true", help='route_prefix="/api"')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    processor = BallFinder()
    server = StreamServer(
        frame_processor=processor,
        port=args.port,
        host="127.0.0.1",
        route_prefix="/api" if args.api else "/",
    )
    processor.server = server
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    runner = await server.start_server()
    print(f"READY {args.port}", flush=True)
    await stop.wait()
    print("SIGTERM", flush=True)
    await server.stop()
    await runner.cleanup()
    print("EXITING", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
