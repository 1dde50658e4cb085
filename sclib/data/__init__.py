"""Data: image decoding and caching, folder discovery, the OSAD protocol, ELPV, batch sampling.

Modules in reading order:

- ``images``: decode any file to uint8 RGB and cache decoded tensors;
- ``layout``: find and check folders in the MVTec AD layout;
- ``protocol``: assign train, test and unused roles for an OSAD setting;
- ``elpv``: build the offline ELPV data set;
- ``sampler``: balanced batches with pseudo-anomaly bases.
"""

from sclib.data.elpv import build_elpv, elpv_split_table
from sclib.data.images import (
    IMAGE_EXTENSIONS,
    ImageCache,
    ImageInfo,
    ImageReadError,
    build_image_cache,
    load_image,
    read_image_info,
    resize_image,
)
from sclib.data.layout import ImageRecord, LayoutReport, check_layout, discover
from sclib.data.protocol import ROLES, SETTINGS, Split, make_split, read_manifest
from sclib.data.sampler import BalancedBatchSampler, BatchIndices

__all__ = [
    "IMAGE_EXTENSIONS",
    "ROLES",
    "SETTINGS",
    "BalancedBatchSampler",
    "BatchIndices",
    "ImageCache",
    "ImageInfo",
    "ImageReadError",
    "ImageRecord",
    "LayoutReport",
    "Split",
    "build_elpv",
    "build_image_cache",
    "check_layout",
    "discover",
    "elpv_split_table",
    "load_image",
    "make_split",
    "read_image_info",
    "read_manifest",
    "resize_image",
]
