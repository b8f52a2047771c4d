"""Building blocks more than one method can use (timm's ``layers`` idea).

* :mod:`~fgmodels.layers.heatmap`: Grad-CAM, connected regions, crop boxes and
  erase masks from a class heat map (pixel boxes ``x0, y0, x1, y1``).
* :mod:`~fgmodels.layers.zoom`: differentiable square crop-and-zoom (unit-square
  boxes ``cx, cy, half side``), the paper's soft boxcar mask, box composition.
* :mod:`~fgmodels.layers.bilinear`: bilinear ("linear fusion") pooling head.
* :mod:`~fgmodels.layers.supcon`: supervised contrastive loss.
* :mod:`~fgmodels.layers.groups`: channel-group counts that divide a layer.
* :mod:`~fgmodels.layers.display`: dashboard images (boxes, heat overlays).

Blocks that only one method uses live in that method's module.
"""
