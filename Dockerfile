# ScopeWatch on the CPU: `docker build -t scopewatch .` then, for a wall screen of one camera,
#   docker run --rm -p 7860:7860 -p 9464:9464 -e SCOPEWATCH_AUTH=staff:CHANGE-ME \
#     scopewatch dashboard rtsp://camera/stream --host 0.0.0.0 --metrics-port 9464 --metrics-host 0.0.0.0
# docs/DEPLOY.md has the CUDA variant, volumes and a systemd unit.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 GRADIO_ANALYTICS_ENABLED=False
# PyAV's wheel bundles FFmpeg; OpenCV is the headless build: no system libraries are needed.
WORKDIR /opt/scopewatch
COPY pyproject.toml README.md ./
COPY model ./model
COPY monitor ./monitor
COPY training ./training
COPY apps ./apps
# The CPU wheel of torch first (pinned), so that nothing pulls a CUDA build.
RUN pip install torch==2.13.0 && pip install . && useradd --system --home /data scopewatch && mkdir -p /data \
    && chown scopewatch /data
USER scopewatch
WORKDIR /data
VOLUME /data
EXPOSE 7860 9464
ENTRYPOINT ["scopewatch"]
CMD ["--help"]
