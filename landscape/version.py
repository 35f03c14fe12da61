"""The package's version, recorded in every file a run writes (its own module, so that the
modules which record it need not import the package's root, the Python API's facade)."""

__version__ = "0.1.0"
