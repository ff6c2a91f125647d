# One image for the API and both workers; docker-compose.yml picks the entry point.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-system-x86 busybox-static kmod zstd lz4 libzstd-dev liblz4-dev libxxhash-dev \
      g++ make python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
# The guest image lives outside the data volumes so every host's volume starts without one.
RUN node --import tsx scripts/build-image.ts busybox --images-dir /app/images
ENV DATA_DIR=/app/data IMAGES_DIR=/app/images
CMD ["node", "--import", "tsx", "supervisor/main.ts"]
