"""sclib: open-set supervised anomaly detection with SaliencyCut, for teaching and analysis.

The package follows the order of the notebooks: ``sclib.data`` (folders, protocol, ELPV),
``sclib.augment`` (saliency and SaliencyCut), ``sclib.models`` (backbones and the two-head
model), ``sclib.losses``, ``sclib.train``, ``sclib.metrics``, ``sclib.bound``, ``sclib.viz``
and ``sclib.widgets``.

Shapes are written ``(B, C, H, W)`` everywhere: batch, channels, height, width.
"""

__version__ = "0.1.0"
