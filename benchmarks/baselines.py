"""What a user would otherwise use, making the same frames: the baselines of the benchmarks.

Every compositor here returns ``(run, frame)``: ``run()`` makes one frame of the workload from
scratch (transparent black, layers bottom first) and ``frame()`` gives the last picture, so
the benchmark can check it against the float64 reference before trusting any figure.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from framering.kernels import BlendMode, LayerStack, PixelLayer, composite_stack
from framering.kernels.workloads import Workload, build

Compositor = tuple[Callable[[], object], Callable[[], np.ndarray]]


def _visible(workload: Workload) -> list[tuple[np.ndarray, int, int, float, slice, slice]]:
    """Each layer's visible part: (pixels, x0, y0, opacity, rows, cols) after clipping."""
    parts = []
    for layer in workload.layers:
        if BlendMode.parse(layer.blend) is not BlendMode.NORMAL:
            raise ValueError("the baselines implement normal mode only (all workloads use it)")
        h, w = layer.pixels.shape[:2]
        x0, y0 = max(layer.x, 0), max(layer.y, 0)
        x1, y1 = min(layer.x + w, workload.width), min(layer.y + h, workload.height)
        if x0 < x1 and y0 < y1 and layer.opacity > 0:
            rows = slice(y0 - layer.y, y1 - layer.y)
            cols = slice(x0 - layer.x, x1 - layer.x)
            parts.append((layer.pixels, x0, y0, layer.opacity, rows, cols))
    return parts


def memcpy(nbytes: int) -> Compositor:
    """A copy of ``nbytes`` (np.copyto, which is memcpy): the bandwidth limit."""
    source = np.ones(nbytes, np.uint8)
    target = np.empty_like(source)
    return (lambda: np.copyto(target, source)), (lambda: target)


def _memcpy_worker(nbytes: int, seconds: float, start: object, results: object) -> None:
    source = np.ones(nbytes, np.uint8)
    target = np.empty_like(source)
    np.copyto(target, source)
    start.wait()  # type: ignore[attr-defined]
    began = time.perf_counter()
    count = 0
    while time.perf_counter() - began < seconds:
        np.copyto(target, source)
        count += 1
    results.put(count / (time.perf_counter() - began))  # type: ignore[attr-defined]


def memcpy_processes(nbytes: int, processes: int, seconds: float = 1.0) -> float:
    """Copies of ``nbytes`` a second, summed over ``processes`` processes copying at once."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_memcpy_worker, args=(nbytes, seconds, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    start.wait()
    rates = [results.get(timeout=60 + seconds) for _ in workers]
    for worker in workers:
        worker.join()
    return float(sum(rates))


def numpy_float32(workload: Workload) -> Compositor:
    """Plain numpy: straight-alpha source-over in float32, one whole-array pass per layer."""
    parts = _visible(workload)
    frame = np.zeros((workload.height, workload.width, 4), np.uint8)

    def run() -> np.ndarray:
        frame[...] = 0
        for pixels, x0, y0, opacity, rows, cols in parts:
            src = pixels[rows, cols].astype(np.float32)
            region = frame[y0 : y0 + src.shape[0], x0 : x0 + src.shape[1]]
            dst = region.astype(np.float32)
            sa = src[..., 3:4] * np.float32(opacity / 255)
            t = dst[..., 3:4] * np.float32(1 / 255) * (1 - sa)
            ao = sa + t
            rgb = (src[..., :3] * sa + dst[..., :3] * t) / np.maximum(ao, np.float32(1e-30))
            region[..., :3] = rgb + 0.5
            region[..., 3:4] = ao * 255 + 0.5
        return frame

    return run, (lambda: frame)


def opencv(workload: Workload) -> Compositor:
    """OpenCV: the same source-over in float32 with cv2 arithmetic (OpenCV's own threads)."""
    parts = _visible(workload)
    frame = np.zeros((workload.height, workload.width, 4), np.uint8)
    prepared = []
    for pixels, x0, y0, opacity, rows, cols in parts:
        src = np.ascontiguousarray(pixels[rows, cols])
        prepared.append((src, x0, y0, opacity))

    def run() -> np.ndarray:
        frame[...] = 0
        for src, x0, y0, opacity in prepared:
            h, w = src.shape[:2]
            region = frame[y0 : y0 + h, x0 : x0 + w]
            s = src.astype(np.float32)
            d = region.astype(np.float32)
            sa = cv2.multiply(s[..., 3], opacity / 255)
            t = cv2.multiply(cv2.multiply(d[..., 3], 1 / 255), cv2.subtract(1.0, sa))
            ao = cv2.add(sa, t)
            inv = cv2.divide(1.0, cv2.max(ao, 1e-30))
            ws = cv2.merge([cv2.multiply(sa, inv)] * 3)
            wd = cv2.merge([cv2.multiply(t, inv)] * 3)
            rgb = cv2.add(cv2.multiply(s[..., :3], ws), cv2.multiply(d[..., :3], wd))
            region[..., :3] = cv2.add(rgb, 0.5)
            region[..., 3] = cv2.add(cv2.multiply(ao, 255.0), 0.5)
        return frame

    return run, (lambda: frame)


def pillow(workload: Workload) -> Compositor:
    """Pillow's ``Image.alpha_composite``, layer by layer, onto a transparent frame.

    Pillow has no global opacity, so each layer's alpha is scaled by its opacity once, in
    set-up (a user would cache that too); parts outside the frame are cropped the same way.
    """
    prepared = []
    for layer in workload.layers:
        pixels = layer.pixels
        if layer.opacity != 1.0:
            pixels = pixels.copy()
            pixels[..., 3] = np.floor(pixels[..., 3] * layer.opacity + 0.5).astype(np.uint8)
        image = Image.fromarray(pixels, "RGBA")
        h, w = pixels.shape[:2]
        left, top = max(-layer.x, 0), max(-layer.y, 0)
        right = min(w, workload.width - layer.x)
        bottom = min(h, workload.height - layer.y)
        if left < right and top < bottom:
            prepared.append((image, (layer.x + left, layer.y + top), (left, top, right, bottom)))
    last: list[Image.Image] = []

    def run() -> Image.Image:
        frame = Image.new("RGBA", (workload.width, workload.height))
        for image, dest, box in prepared:
            frame.alpha_composite(image, dest=dest, source=box)
        last[:] = [frame]
        return frame

    return run, (lambda: np.asarray(last[0]))


# ----------------------------------------------------------------------------- pickling pool
_pool_workload: Workload | None = None


def _pool_init(name: str) -> None:
    global _pool_workload
    _pool_workload = build(name)
    composite_stack(np.empty((8, 8, 4), np.uint8), [])  # load the cached kernel


def _pool_render(layers: list[tuple[np.ndarray, int, int, float]]) -> np.ndarray:
    """In a pool worker: composite pickled layers with framering's own kernel, return it."""
    assert _pool_workload is not None

    frame = np.empty((_pool_workload.height, _pool_workload.width, 4), np.uint8)
    composite_stack(frame, [PixelLayer(p, x=x, y=y, opacity=o) for p, x, y, o in layers])
    return frame


def pickling_pool(workload: Workload, workers: int, frames: int) -> tuple[float, np.ndarray]:
    """Frames a second through ``multiprocessing.Pool``: layers pickled in, the frame out.

    The workers composite with framering's own kernel, so the difference from the engine is
    the price of pickling pixels through pipes, not of the arithmetic.
    """
    payload = [(layer.pixels, layer.x, layer.y, layer.opacity) for layer in workload.layers]
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_pool_init, initargs=(workload.name,)) as pool:
        pool.map(_pool_render, [payload] * workers)  # warm every worker
        began = time.perf_counter()
        last = None
        for frame in pool.imap(_pool_render, [payload] * frames, chunksize=1):
            last = frame
        elapsed = time.perf_counter() - began
    assert last is not None
    return frames / elapsed, last


def framering_kernel(workload: Workload) -> Compositor:
    """The whole-stack kernel on one thread (what the engine's workers run)."""
    stack = LayerStack.prepare(workload.width, workload.height, workload.layers)
    frame = np.empty((workload.height, workload.width, 4), np.uint8)
    return (lambda: composite_stack(frame, stack)), (lambda: frame)


def gstreamer_available() -> str | None:
    """Path of gst-launch-1.0, or None (the GStreamer comparison is then skipped)."""
    return shutil.which("gst-launch-1.0")
