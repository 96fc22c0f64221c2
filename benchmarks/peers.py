"""Other CPU compositors as baselines of the kernel benchmark: cairo (pixman) and Skia.

Each makes the same frames as the kernel, one thread, from transparent black: the layers are
converted once, in set-up, into what the library blends from (premultiplied, in its byte
order), as an application using it would keep them; only the compositing is timed. Each
returns a ``Compositor`` (``run``, ``frame``), where ``frame()`` gives the last picture as
straight RGBA for the check against the float64 reference, or None when the library is not
installed:

- **cairo**: pycairo if it is installed (``pip install pycairo``: it builds against the
  system's cairo headers), else the system's ``libcairo.so.2`` itself through ``ctypes`` (no
  build; most Linux machines have it). Painting an ARGB32 surface with ``OVER`` and
  ``paint_with_alpha`` is pixman's ``over`` with a constant mask.
- **Skia**: skia-python (the ``bench`` extra), drawing images with a paint's alpha into a
  surface over a numpy buffer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import weakref
from collections.abc import Callable

import numpy as np

from framering.kernels import BlendMode
from framering.kernels.workloads import Workload

Compositor = tuple[Callable[[], object], Callable[[], np.ndarray]]


def _normal_only(workload: Workload) -> None:
    for layer in workload.layers:
        if BlendMode.parse(layer.blend) is not BlendMode.NORMAL or layer.premultiplied:
            raise ValueError("the peers implement normal mode on straight layers only")


def premultiplied(pixels: np.ndarray, order: tuple[int, int, int, int]) -> np.ndarray:
    """Straight RGBA8 to premultiplied 8-bit channels in ``order`` (indices into RGBA),
    rounded to nearest, as the libraries' own conversions do."""
    alpha = pixels[..., 3:4].astype(np.float32) / 255.0
    rgb = np.floor(pixels[..., :3].astype(np.float32) * alpha + 0.5)
    out = np.concatenate([rgb, pixels[..., 3:4].astype(np.float32)], axis=-1)
    return np.ascontiguousarray(out[..., list(order)].astype(np.uint8))


def straight_rgba(buffer: np.ndarray, order: tuple[int, int, int, int]) -> np.ndarray:
    """A premultiplied frame in ``order`` back to straight RGBA8 (for the check only)."""
    rgba = np.empty_like(buffer)
    for channel, index in enumerate(order):
        rgba[..., index] = buffer[..., channel]
    alpha = rgba[..., 3:4].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = np.where(alpha > 0, rgba[..., :3] * 255.0 / alpha, 0.0)
    rgba[..., :3] = np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)
    return rgba


# cairo's ARGB32 is a native-endian 32-bit word: B, G, R, A bytes on a little-endian machine
CAIRO_ORDER = (2, 1, 0, 3)
_CAIRO_ARGB32, _CAIRO_CLEAR, _CAIRO_OVER = 0, 0, 2


def _libcairo() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("cairo")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    p, i, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
    signatures = {
        "cairo_image_surface_create_for_data": (p, [p, i, i, i, i]),
        "cairo_create": (p, [p]),
        "cairo_set_operator": (None, [p, i]),
        "cairo_paint": (None, [p]),
        "cairo_paint_with_alpha": (None, [p, d]),
        "cairo_set_source_surface": (None, [p, p, d, d]),
        "cairo_surface_flush": (None, [p]),
        "cairo_surface_destroy": (None, [p]),
        "cairo_destroy": (None, [p]),
        "cairo_version_string": (ctypes.c_char_p, []),
    }
    for function, (restype, argtypes) in signatures.items():
        getattr(lib, function).restype = restype
        getattr(lib, function).argtypes = argtypes
    return lib


def cairo_version() -> str | None:
    """Which cairo the baseline would use, or None."""
    try:
        import cairo as pycairo

        return f"pycairo {pycairo.version}, cairo {pycairo.cairo_version_string()}"
    except ImportError:
        lib = _libcairo()
        return None if lib is None else f"libcairo {lib.cairo_version_string().decode()} (ctypes)"


def cairo(workload: Workload) -> Compositor | None:
    """The workload painted with cairo: CLEAR, then each layer OVER with its opacity."""
    _normal_only(workload)
    layers = [
        (premultiplied(layer.pixels, CAIRO_ORDER), layer.x, layer.y, layer.opacity)
        for layer in workload.layers
    ]
    frame = np.zeros((workload.height, workload.width, 4), np.uint8)
    try:
        import cairo as pycairo
    except ImportError:
        return _cairo_ctypes(frame, layers)

    def surface(pixels: np.ndarray) -> pycairo.ImageSurface:
        height, width = pixels.shape[:2]
        return pycairo.ImageSurface.create_for_data(
            memoryview(pixels), pycairo.FORMAT_ARGB32, width, height, 4 * width
        )

    target = surface(frame)
    sources = [(surface(pixels), x, y, opacity) for pixels, x, y, opacity in layers]
    context = pycairo.Context(target)

    def run() -> None:
        context.set_operator(pycairo.OPERATOR_CLEAR)
        context.paint()
        context.set_operator(pycairo.OPERATOR_OVER)
        for source, x, y, opacity in sources:
            context.set_source_surface(source, x, y)
            if opacity >= 1.0:
                context.paint()
            else:
                context.paint_with_alpha(opacity)
        target.flush()

    return run, (lambda: straight_rgba(frame, CAIRO_ORDER))


def _cairo_ctypes(
    frame: np.ndarray, layers: list[tuple[np.ndarray, int, int, float]]
) -> Compositor | None:
    lib = _libcairo()
    if lib is None:
        return None

    def surface(pixels: np.ndarray) -> int:
        height, width = pixels.shape[:2]
        handle = lib.cairo_image_surface_create_for_data(
            pixels.ctypes.data, _CAIRO_ARGB32, width, height, 4 * width
        )
        weakref.finalize(pixels, lib.cairo_surface_destroy, handle)  # with its pixels
        return handle

    target = surface(frame)
    sources = [(surface(pixels), pixels, x, y, opacity) for pixels, x, y, opacity in layers]
    context = lib.cairo_create(target)
    weakref.finalize(frame, lib.cairo_destroy, context)

    def run() -> None:
        lib.cairo_set_operator(context, _CAIRO_CLEAR)
        lib.cairo_paint(context)
        lib.cairo_set_operator(context, _CAIRO_OVER)
        for source, _, x, y, opacity in sources:
            lib.cairo_set_source_surface(context, source, float(x), float(y))
            if opacity >= 1.0:
                lib.cairo_paint(context)
            else:
                lib.cairo_paint_with_alpha(context, float(opacity))
        lib.cairo_surface_flush(target)

    run.sources = sources  # type: ignore[attr-defined]  # keeps the layers' pixels alive
    return run, (lambda: straight_rgba(frame, CAIRO_ORDER))


SKIA_ORDER = (0, 1, 2, 3)


def skia_version() -> str | None:
    try:
        import skia
    except ImportError:
        return None
    return f"skia-python {skia.__version__}"


def skia(workload: Workload) -> Compositor | None:
    """The workload drawn with Skia: clear, then each layer as an image with its alpha."""
    try:
        import skia as sk
    except ImportError:
        return None
    _normal_only(workload)
    frame = np.zeros((workload.height, workload.width, 4), np.uint8)
    surface = sk.Surface(frame, colorType=sk.kRGBA_8888_ColorType, alphaType=sk.kPremul_AlphaType)
    canvas = surface.getCanvas()
    images = []
    for layer in workload.layers:
        image = sk.Image.fromarray(
            premultiplied(layer.pixels, SKIA_ORDER),
            colorType=sk.kRGBA_8888_ColorType,
            alphaType=sk.kPremul_AlphaType,
        )
        paint = sk.Paint()
        paint.setAlphaf(float(layer.opacity))
        images.append((image, float(layer.x), float(layer.y), paint))
    sampling = sk.SamplingOptions()

    def run() -> None:
        canvas.clear(sk.ColorTRANSPARENT)
        for image, x, y, paint in images:
            canvas.drawImage(image, x, y, sampling, paint)
        surface.flushAndSubmit()

    return run, (lambda: straight_rgba(frame, SKIA_ORDER))
