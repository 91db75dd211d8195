# The booking engine image: one image, the command picks the role (serve, worker, migrate).
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY engine engine
COPY waitroom waitroom
COPY api api
COPY realtime realtime
COPY storage storage
COPY bench bench
COPY plumbing plumbing
RUN pip install --no-cache-dir --no-deps .
RUN useradd --create-home booking
USER booking
EXPOSE 8000 8001 9100
CMD ["booking", "serve", "--host", "0.0.0.0"]
