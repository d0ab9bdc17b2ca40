"""citygrid's HTTP API (FastAPI): thin routers over the ``spatial`` domain."""
