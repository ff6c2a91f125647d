// zod with the `.openapi()` extension, so one schema is validator, type and OpenAPI document.
export { z } from "@hono/zod-openapi";
