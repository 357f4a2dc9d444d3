"""funnel-ranking: a multi-objective e-commerce ranking pipeline on TFX."""

from setuptools import find_packages, setup

setup(
    name="funnel-ranking",
    version="0.1.0",
    description="Multi-objective e-commerce ranking (DMT) from raw logs to TF Serving, on TFX",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline*", "components*", "models*", "serving*", "schemas*", "simulation*", "bench*"]),
    package_data={"schemas": ["*.yaml", "*.pbtxt"], "pipeline": ["*.yaml"], "models": ["*.yaml"]},
    include_package_data=True,
    # Pinned versions live in requirements.lock (installed by `make setup`).
    install_requires=["tfx==1.16.0", "tensorflow-recommenders", "tensorflow-serving-api", "pyarrow", "pyyaml", "google-crc32c", "isal",
                      "matplotlib"],
    # Benchmarks only (`make bench-peers` installs it into .venv): the peer library funnel is compared with.
    # `funnel compile` and the schedulers (`make orchestration-deps`; resolved with the base set in
    # requirements-orchestration.lock): Kubeflow Pipelines V2 / Vertex AI and Airflow 2.10.
    extras_require={"bench": ["deepctr==0.9.4"],
                    "orchestration": ["kfp>=2,<3", "kfp-pipeline-spec>=0.2.2", "apache-airflow==2.10.3"]},
    entry_points={"console_scripts": ["funnel = pipeline.cli:main"]},
)
