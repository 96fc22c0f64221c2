"""framering's pixel arithmetic: Numba alpha-compositing kernels and their numpy references.

Pure pixel arithmetic: this package knows nothing of processes or shared memory. Every public
function validates its arguments in Python and then runs a kernel that trusts them.

``codes`` holds every number that names something across a process boundary (pixel formats,
YUV matrices and ranges, layer flags); the engine imports them from here.
"""

from framering.kernels import codes
from framering.kernels.blend import BLEND_MODE_NAMES, BlendMode
from framering.kernels.codes import (
    LAYER_FRAME,
    LAYER_OPAQUE,
    LAYER_PREMULTIPLIED,
    MATRIX_NAMES,
    RANGE_NAMES,
    matrix_code,
    matrix_name,
    range_code,
    range_name,
)
from framering.kernels.convert_in import convert_to_rgba
from framering.kernels.convert_out import convert_frame
from framering.kernels.delivery import Delivery
from framering.kernels.fill import clear, fill
from framering.kernels.formats import FrameFormat, source_shape
from framering.kernels.layers import BufferTable, LayerStack, PixelLayer, is_opaque
from framering.kernels.stack import composite_layer, composite_stack
from framering.kernels.warmup import warmup

__all__ = [
    "BLEND_MODE_NAMES",
    "LAYER_FRAME",
    "LAYER_OPAQUE",
    "LAYER_PREMULTIPLIED",
    "MATRIX_NAMES",
    "RANGE_NAMES",
    "BlendMode",
    "BufferTable",
    "Delivery",
    "FrameFormat",
    "LayerStack",
    "PixelLayer",
    "clear",
    "codes",
    "composite_layer",
    "composite_stack",
    "convert_frame",
    "convert_to_rgba",
    "fill",
    "is_opaque",
    "matrix_code",
    "matrix_name",
    "range_code",
    "range_name",
    "source_shape",
    "warmup",
]
