# sepconv-serve on the official TensorFlow image, CPU or GPU from the same file:
#   docker build -t sepconv-serve .
#   docker build --build-arg BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu -t sepconv-serve:gpu .
# The tag is the `tensorflow>=` floor of pyproject.toml (tests/deploy/test_containers.py keeps them equal).
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid lets Kubernetes verify runAsNonRoot (deploy/kubernetes runs as 10001).
RUN useradd --uid 10001 --user-group --no-log-init --create-home --shell /usr/sbin/nologin sepconv

WORKDIR /app

# Dependencies get their own layer, read from pyproject.toml alone, so a code change reuses it.
# The base image's TensorFlow already satisfies `tensorflow>=...`; the constraint pins the
# installed version, so a dependency that wanted another one fails the build instead of
# silently replacing the (CUDA-enabled, in the GPU image) TensorFlow underneath.
COPY pyproject.toml ./
RUN python3 -c "import importlib.metadata, pathlib, tomllib; \
project = tomllib.loads(pathlib.Path('pyproject.toml').read_text()); \
requirements = project['build-system']['requires'] + project['project']['dependencies']; \
pathlib.Path('/tmp/requirements.txt').write_text('\n'.join(requirements)); \
pathlib.Path('/tmp/constraints.txt').write_text('tensorflow==' + importlib.metadata.version('tensorflow'))" \
    && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \
    && rm /tmp/requirements.txt /tmp/constraints.txt

# The code: its dependencies and build backend are already installed by the layer above.
COPY README.md ./
COPY training/ training/
COPY service/ service/
RUN python3 -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build sepconv_serve.egg-info

COPY models/ models/

USER 10001:10001

ENV SEPCONV_HOST=0.0.0.0 \
    SEPCONV_PORT=8000 \
    SEPCONV_MODEL_DIR=/app/models
EXPOSE 8000

# Python, not curl: the base image need not ship curl. Models load in seconds; the start period
# also covers a first GPU initialisation.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SEPCONV_PORT', '8000') + '/health/ready', timeout=4)"]

CMD ["sepconv-serve"]
