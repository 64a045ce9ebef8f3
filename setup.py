"""reseg: semantic segmentation of remote sensing imagery with Keras 3.

Pins live here and only here: `make setup` installs `.[test]` from this file,
and Beam ships the package to remote workers with `--setup_file ./setup.py`.
"""

from setuptools import find_packages, setup

# Runtime pins. Change a version here and nowhere else.
REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "apache-beam==2.77.0",
    "google-crc32c==1.9.0",  # Beam's TFRecord sink and our own shard writer
    "mlflow==3.17.2",
    "rasterio==1.4.4",
    "fiona==1.10.1",
    "shapely==2.1.2",  # polygon labels: repair of invalid polygons, coverage of the image
    "rio-cogeo==7.0.4",
    "opencv-python-headless==5.0.0.93",
    "numpy==2.4.6",
    "pydantic==2.14.4",
    "PyYAML==6.0.4",
    "matplotlib==3.11.2",
    "tqdm==4.70.1",
    "scikit-image==0.26.0",
    "pydensecrf2==1.1",
    "tensorflow-serving-api==2.21.0",
    "requests==2.34.2",
    # object storage (reseg/storage.py): one path type over fsspec; GDAL reads rasters itself
    "universal_pathlib==0.3.10",
    "fsspec==2026.9.0",
    "s3fs==2026.9.0",
    "gcsfs==2026.10.1",
    # STAC: scenes read from items and catalogs, predictions published as items (reseg/stac.py)
    "pystac==1.15.2",
    "pystac-client==0.9.1",  # STAC API searches (data.stac[].api, reseg predict --stac-search)
    "jsonschema==4.26.0",  # published STAC validated offline; tests: configs against `reseg schema`
    # SegFormer's MiT encoder: keras-hub presets (local folders offline, names download through
    # keras-hub itself). 0.32.0 keeps tensorflow 2.21.0 and keras 3.15.1 (it adds
    # tensorflow-text 2.21.1, tokenizers, huggingface-hub, kagglehub)
    "keras-hub==0.32.0",
]

EXTRAS = {
    "test": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "pytest-xdist==3.8.0",
        "hypothesis==6.170.17",
        "ruff==0.17.6",
        "import-linter==2.17",  # the layer contract (pyproject.toml), run by tests/test_layers.py
        # tests/test_stac.py: the published items load in the ecosystem's loader (pulls
        # xarray, dask, odc-geo; pure Python wheels)
        "odc-stac==0.5.3",
        # tests/test_stac_api.py: a real STAC API server on loopback (stac-fastapi over a
        # static catalog; no database)
        "stac-fastapi-static==1.0.1",
        "moto[server,s3]==5.2.5",  # tests/storage: an S3 API server on loopback
        "gcp-storage-emulator==2026.7.19",  # tests/storage: a GCS emulator on loopback
        # the documentation site (mkdocs.yml), built strictly by tests/test_docs.py
        "mkdocs==1.6.1",
        "mkdocs-material==9.8.2",
        # tests/models/test_convert.py builds PyTorch ResNets; `reseg weights convert` reads
        # .pth files with it. Plain PyPI here (the CPU index was not reachable); where
        # https://download.pytorch.org/whl/cpu is, its CPU wheel (190 MB, installs in ~10 s)
        # avoids PyPI's CUDA libraries.
        "torch==2.13.0",
    ],
    # torch for the side-by-side model benchmark (bench/models.py); also in `test`.
    "bench": ["torch==2.13.0"],
}

setup(
    name="reseg",
    version="0.1.0",
    description="Semantic segmentation of remote sensing imagery with confidence rounds",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["reseg", "reseg.*"]),
    package_data={"reseg": ["examples/*.yaml", "stac_schemas/*.json"]},
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["reseg=reseg.cli:main"]},
)
