# One image for every service; docker-compose.yml picks the command.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY shared ./shared
COPY services ./services
COPY frontend ./frontend
COPY data ./data
RUN useradd --create-home bot && mkdir -p /app/var && chown bot /app/var
USER bot
