"""Pictures of results: overlays over the photo (boxes, 68 landmarks with contours, pose axes),
the dense meshes shaded and z-buffered over the photo, depth images, and a static HTML contact
sheet of a run.

* :func:`facealign_cli.render.overlay.draw_faces` — every layer of one photo in one call.
* :mod:`facealign_cli.render.shading` — shaded mesh and depth layers (:func:`mesh_layers`).
* :mod:`facealign_cli.render.raster` — the z-buffered rasteriser (DEODR, CPU, no OpenGL).
* :mod:`facealign_cli.render.sheet` — ``index.html`` from per-photo records.
"""
