"""Benchmarks of ``facealign evaluate``, one concern per module.

* :mod:`.metrics`: NME (box, 3D, inter-ocular), |yaw| bins, head-pose MAE, CED / AUC / failure
  rate, detection matching (pure numpy);
* :mod:`.datasets`: the AFLW2000-3D loader and the 68-point photo folders (``.pts`` / JSON);
* :mod:`.occlusion`: deterministic synthetic occluders;
* :mod:`.protocols`: the runs (:class:`~.protocols.Method`, ``run_*`` / ``summarise_*``);
* :mod:`.reports`: tables, Markdown, JSON and CED plots.

Nothing here reads a fixed data location: every path comes from the caller.
"""
