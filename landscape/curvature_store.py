"""The curvature file lives in the file layer now: ``landscape.store.curvature``."""

from landscape.store.curvature import *  # noqa: F403
from landscape.store.curvature import (  # noqa: F401
    MAPS,
    SCHEMA,
    SCHEMA_VERSION,
    SETTINGS,
    CurvatureHeader,
    CurvatureMap,
    CurvatureStore,
    PointCurvature,
    check_resumable,
    is_curvature_file,
    read_curvature,
)
