# The image Railway builds and runs: Python, the production requirements, the service.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A user without root rights runs the service; it owns /app so that the default SQLite
# file can be created there.
RUN useradd --create-home --uid 10001 app && mkdir /app && chown app:app /app
WORKDIR /app

# Requirements first: this layer is rebuilt only when they change, not on every edit.
COPY requirements_prod.txt .
RUN pip install -r requirements_prod.txt

COPY --chown=app:app . .
USER app

# Railway sets $PORT; gunicorn.conf.py binds to it (5000 when unset).
EXPOSE 5000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "app:app"]
