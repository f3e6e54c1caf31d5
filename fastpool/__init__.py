"""fastpool: parallel Numba pooling kernels with backward passes for NumPy pipelines."""

# chooses numba's threading layer: must run before any kernel does
from ._threading import get_num_threads, set_num_threads, threading_layer
from .errors import PoolingError, PoolingTypeError
from .pooling import (
    adaptive_avg_pool1d, adaptive_avg_pool1d_backward, adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward, adaptive_avg_pool3d, adaptive_avg_pool3d_backward,
    adaptive_max_pool1d, adaptive_max_pool1d_backward, adaptive_max_pool2d,
    adaptive_max_pool2d_backward, adaptive_max_pool3d, adaptive_max_pool3d_backward,
    avg_pool1d, avg_pool1d_backward, avg_pool2d, avg_pool2d_backward, avg_pool3d,
    avg_pool3d_backward, global_avg_pool, global_avg_pool_backward, global_lp_pool,
    global_lp_pool_backward, global_max_pool, global_max_pool_backward, lp_pool1d,
    lp_pool1d_backward, lp_pool2d, lp_pool2d_backward, lp_pool3d, lp_pool3d_backward,
    max_pool1d, max_pool1d_backward, max_pool2d, max_pool2d_backward, max_pool3d,
    max_pool3d_backward,
)
from .family import (
    fractional_max_pool2d, fractional_max_pool2d_backward, fractional_max_pool3d,
    fractional_max_pool3d_backward, max_unpool1d, max_unpool1d_backward, max_unpool2d,
    max_unpool2d_backward, max_unpool3d, max_unpool3d_backward, mixed_pool1d,
    mixed_pool1d_backward, mixed_pool2d, mixed_pool2d_backward, mixed_pool3d,
    mixed_pool3d_backward, roi_align, roi_align_backward, roi_pool, roi_pool_backward,
    spatial_pyramid_pool, spatial_pyramid_pool_backward, stochastic_pool1d,
    stochastic_pool1d_backward, stochastic_pool2d, stochastic_pool2d_backward,
    stochastic_pool3d, stochastic_pool3d_backward,
)

__version__ = "0.1.0"

__all__ = [
    "PoolingError", "PoolingTypeError", "__version__",
    "set_num_threads", "get_num_threads", "threading_layer",
    "adaptive_avg_pool1d", "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward", "adaptive_avg_pool3d", "adaptive_avg_pool3d_backward",
    "adaptive_max_pool1d", "adaptive_max_pool1d_backward", "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward", "adaptive_max_pool3d", "adaptive_max_pool3d_backward",
    "avg_pool1d", "avg_pool1d_backward", "avg_pool2d", "avg_pool2d_backward", "avg_pool3d",
    "avg_pool3d_backward", "global_avg_pool", "global_avg_pool_backward", "global_lp_pool",
    "global_lp_pool_backward", "global_max_pool", "global_max_pool_backward", "lp_pool1d",
    "lp_pool1d_backward", "lp_pool2d", "lp_pool2d_backward", "lp_pool3d", "lp_pool3d_backward",
    "max_pool1d", "max_pool1d_backward", "max_pool2d", "max_pool2d_backward", "max_pool3d",
    "max_pool3d_backward",
    "fractional_max_pool2d", "fractional_max_pool2d_backward", "fractional_max_pool3d",
    "fractional_max_pool3d_backward", "max_unpool1d", "max_unpool1d_backward", "max_unpool2d",
    "max_unpool2d_backward", "max_unpool3d", "max_unpool3d_backward", "mixed_pool1d",
    "mixed_pool1d_backward", "mixed_pool2d", "mixed_pool2d_backward", "mixed_pool3d",
    "mixed_pool3d_backward", "roi_align", "roi_align_backward", "roi_pool", "roi_pool_backward",
    "spatial_pyramid_pool", "spatial_pyramid_pool_backward", "stochastic_pool1d",
    "stochastic_pool1d_backward", "stochastic_pool2d", "stochastic_pool2d_backward",
    "stochastic_pool3d", "stochastic_pool3d_backward",
]
