"""reseg: semantic segmentation of remote sensing imagery with confidence rounds.

The Python API (`reseg.api`): `load_config`, `Pipeline`, `predict_arrays`,
`PredictionArrays`. They are imported on first use (they load TensorFlow), so
`import reseg` and the CLI's start stay fast, and TensorFlow's and Beam's start-up lines
stay off the screen (`reseg.quiet.library`: debug records instead, shown where the host's
logging shows them).
"""

__version__ = "0.1.0"

_API = ("Pipeline", "PredictionArrays", "load_config", "predict_arrays")


def __getattr__(name: str):
    if name in _API:
        import importlib

        from reseg import quiet

        quiet.library()
        return getattr(importlib.import_module("reseg.api"), name)
    raise AttributeError(f"module 'reseg' has no attribute {name!r}")
