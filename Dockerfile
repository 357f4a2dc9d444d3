# funnel's pipeline image. Kubeflow Pipelines (and Vertex AI Pipelines) start every step of a
# compiled spec in it (`funnel compile --target kubeflow`; the spec names the image given by
# `orchestration.image` in pipeline/config.yaml) with
#   python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor --executor_class_path ...
# which imports the steps' code by module path (models.trainer.run_fn,
# models.preprocessing.preprocessing_fn, components.ingest.executor...). Airflow workers can run
# the DAG module of `funnel compile --target airflow` in it too. From the repository root:
#   docker build -t gcr.io/PROJECT/funnel:TAG . && docker push gcr.io/PROJECT/funnel:TAG
FROM python:3.10-slim

ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/funnel

# The locked set as it is, no resolution (--no-deps): requirements-orchestration.lock is
# requirements.lock resolved together with the orchestration extra (kfp-pipeline-spec, which the
# step entry point imports, and Airflow). A few locked packages ship only sources with C/C++
# extensions (pyfarmhash, crcmod): the compiler is there while they build, then removed.
COPY requirements-orchestration.lock ./
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && pip install --no-deps -r requirements-orchestration.lock \
 && apt-get purge -y build-essential \
 && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

# The package (setup.py's packages and their data files: config, presets, schemas).
COPY setup.py ./
COPY pipeline pipeline
COPY components components
COPY models models
COPY serving serving
COPY schemas schemas
COPY simulation simulation
COPY bench bench
RUN pip install --no-deps . && funnel presets > /dev/null

CMD ["funnel", "--help"]
