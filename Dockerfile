# sepconv-serve: the official TensorFlow image's TensorFlow, or a slim image without it.
#   docker build -t sepconv-serve .                        # CPU, on tensorflow/tensorflow:2.21.0
#   docker build --build-arg BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu -t sepconv-serve:gpu .
#   docker build --build-arg BASE_IMAGE=python:3.11-slim --build-arg RUNTIME=onnxruntime \
#     -t sepconv-serve:slim .                              # ONNX Runtime only: no TensorFlow
# The tag is the `tensorflow>=` floor of pyproject.toml (tests/deploy/test_containers.py keeps them
# equal). docs/containers.md has the measured sizes, memory and start-up times.
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0
FROM ${BASE_IMAGE}

# tensorflow: serve SavedModels on the base image's TensorFlow; onnxruntime: serve the
# model.onnx files on ONNX Runtime, with neither TensorFlow nor matplotlib installed.
ARG RUNTIME=tensorflow

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A base may end as a non-root user (one TensorFlow runtime Dockerfile ends with USER tfuser):
# become root (uid 0) to create ours.
USER 0

# A fixed numeric uid lets Kubernetes verify runAsNonRoot (deploy/kubernetes runs as 10001).
RUN useradd --uid 10001 --user-group --no-log-init --create-home --shell /usr/sbin/nologin sepconv

WORKDIR /app

# Dependencies get their own layer, read from pyproject.toml alone, so a code change reuses it.
# requirements.py keeps the base image's own TensorFlow (`tensorflow` or `tensorflow-cpu`) at
# its installed version, so pip never installs a second one; it stops with a clear message on
# a base whose Python is older than 3.11.
COPY pyproject.toml ./
COPY deploy/docker/requirements.py /tmp/requirements.py
RUN python3 /tmp/requirements.py "${RUNTIME}" /tmp/requirements.txt /tmp/constraints.txt \
    && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \
    && rm /tmp/requirements.py /tmp/requirements.txt /tmp/constraints.txt

# The code: its dependencies and build backend are already installed by the layer above.
COPY README.md ./
COPY sepconv_contract/ sepconv_contract/
COPY sepconv_bench/ sepconv_bench/
COPY client/ client/
COPY training/ training/
COPY service/ service/
RUN python3 -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

COPY models/ models/

USER 10001:10001

# Keras imports matplotlib, which wants a writable config folder; the root filesystem is
# read-only under Kubernetes (and `docker run --read-only`), /tmp is not.
ENV SEPCONV_HOST=0.0.0.0 \
    SEPCONV_PORT=8000 \
    SEPCONV_MODEL_DIR=/app/models \
    SEPCONV_RUNTIME=${RUNTIME} \
    MPLCONFIGDIR=/tmp/matplotlib
EXPOSE 8000

# Python, not curl: the base image need not ship curl. Every 5 s, so the container turns healthy
# within 5 s of being ready (docs/containers.md: `--start-interval` needs Docker Engine 25 and
# the legacy builder rejects it); the start period covers a first GPU initialisation.
HEALTHCHECK --interval=5s --timeout=4s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SEPCONV_PORT', '8000') + '/health/ready', timeout=3)"]

CMD ["sepconv-serve"]
