# signoff server image. Build: docker build -t signoff .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY policies ./policies
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip install --system --no-cache -c constraints.txt .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /var/lib/signoff signoff \
 && mkdir -p /var/lib/signoff && chown signoff /var/lib/signoff
COPY --from=build /usr/local /usr/local
USER 10001
WORKDIR /var/lib/signoff
ENV SIGNOFF_CONFIG=/etc/signoff/signoff.yaml PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["signoff"]
CMD ["serve"]
