// Shared pieces of route definitions: the error responses, the bearer security requirement, and JSON responses.
import type { z } from "@hono/zod-openapi";
import type { Context, TypedResponse } from "hono";
import { ERROR_ENVELOPE_SCHEMA } from "../shared/errors.ts";

const ERROR_DESCRIPTIONS = {
  400: "Invalid request (code invalid_request, invalid_snapshot_compression or invalid_timeout)",
  401: "Missing or invalid bearer token (code unauthorized)",
  404: "Not found (code not_found)",
  409: "Conflict with the current state (code conflict, invalid_state, name_conflict, ambiguous or insufficient_resources)",
  413: "Request body too large (code invalid_request)",
  500: "Internal error (code internal_error)",
  501: "The hypervisor or this server cannot do it (code not_supported)",
  503: "A dependency is unavailable (code unavailable)",
  504: "The host did not answer in time (code unavailable)",
  507: "The host's disk has no room for it (code insufficient_storage)",
} as const;

type ErrorStatusWithDescription = keyof typeof ERROR_DESCRIPTIONS;

/** The error responses a route can give, always including 401, 500 and 503. */
export function errorResponses(...statuses: ErrorStatusWithDescription[]) {
  const all = [...new Set<ErrorStatusWithDescription>([...statuses, 401, 500, 503])].sort();
  return Object.fromEntries(
    all.map((status) => [
      status,
      { description: ERROR_DESCRIPTIONS[status], content: { "application/json": { schema: ERROR_ENVELOPE_SCHEMA } } },
    ]),
  ) as Record<
    ErrorStatusWithDescription,
    { description: string; content: { "application/json": { schema: typeof ERROR_ENVELOPE_SCHEMA } } }
  >;
}

export const BEARER_SECURITY = [{ bearerAuth: [] as string[] }];

/** A JSON response of a route definition. */
export const jsonResponse = <Schema extends z.ZodType>(schema: Schema, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

/**
 * A 200 whose body is JSON text already written as `T` (e.g. stored resources spliced together), typed as the route's
 * JSON response: the text is sent as is, not parsed and written again.
 */
export function jsonText<T>(c: Context, text: string): TypedResponse<T, 200, "json"> {
  return c.body(text, 200, { "content-type": "application/json" }) as unknown as TypedResponse<T, 200, "json">;
}
