# The citygrid API. Run it with docker compose (docker-compose.yml), which also starts PostGIS.

# The map's front-end packages (Leaflet and plugins) come from the npm registry, served by the API itself.
FROM node:20-bookworm-slim AS webmap
WORKDIR /webmap
COPY webmap/package.json webmap/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CITYGRID_API_HOST=0.0.0.0 CITYGRID_API_PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY spatial ./spatial
COPY api ./api
COPY webmap ./webmap
COPY --from=webmap /webmap/node_modules ./webmap/node_modules
RUN pip install -e .
COPY fixtures ./fixtures

RUN useradd --system --home /app citygrid
USER citygrid
EXPOSE 8000

# Migrate, load the Wenshan fixture into an empty database, serve.
CMD ["sh", "-c", "citygrid db migrate && citygrid load fixtures/geojson --if-empty && citygrid serve"]
