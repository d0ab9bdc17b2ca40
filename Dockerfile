# The citygrid API. Run it with docker compose (docker-compose.yml), which also starts PostGIS.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CITYGRID_API_HOST=0.0.0.0 CITYGRID_API_PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY spatial ./spatial
COPY api ./api
RUN pip install .
COPY fixtures ./fixtures

RUN useradd --system --home /app citygrid
USER citygrid
EXPOSE 8000

# Migrate, load the Wenshan fixture into an empty database, serve.
CMD ["sh", "-c", "citygrid db migrate && citygrid load fixtures/geojson --if-empty && citygrid serve"]
