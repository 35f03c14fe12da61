"""The file layer: one HDF5 core, the surface and curvature schemas on it (DESIGN §6).

- ``store.core``: atomic creation, checksummed datasets, damage-aware reads, reading while a run
  writes, the resume check's shared part, ``RunFile`` (a file one run writes under its lock);
- ``store.codec``: the one attribute codec;
- ``store.surface``: the surface file (schema ``landscape.surface`` v1): ``SurfaceStore``,
  ``read_surface``, ``read_directions``, the analysis in reserved space, Li et al.'s files;
- ``store.curvature``: the curvature file (schema ``landscape.curvature`` v1).
- ``store.values``: a surface's values in memory (``SurfaceValues``), what ``read_surface``
  returns; ``landscape.surface.Surface`` adds the views (plot, analysis) above the readers.

The per-point quantities a surface file holds are declared in ``landscape.quantities``.
"""

from landscape.store.core import (
    RESUME_FIX,
    DamagedData,
    RunFile,
    checksummed,
    create_atomically,
    existing_file,
    first_difference,
    open_for_reading,
    read_values,
)
from landscape.store.surface import (
    ANALYSIS_BYTES,
    SCHEMA,
    RunHeader,
    SurfaceStore,
    check_resumable,
    done_flags,
    pending_points,
    read_directions,
    read_surface,
    repeat_count,
    repeat_group,
    stored_config,
    write_analysis,
)
from landscape.store.validate import SCHEMA_VERSION, SCHEMA_VERSION_PLANE

__all__ = [
    "ANALYSIS_BYTES",
    "RESUME_FIX",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_PLANE",
    "DamagedData",
    "RunFile",
    "RunHeader",
    "SurfaceStore",
    "check_resumable",
    "checksummed",
    "create_atomically",
    "done_flags",
    "existing_file",
    "first_difference",
    "open_for_reading",
    "pending_points",
    "read_directions",
    "read_surface",
    "read_values",
    "repeat_count",
    "repeat_group",
    "stored_config",
    "write_analysis",
]
