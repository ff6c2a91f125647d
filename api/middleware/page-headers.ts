// Headers for the pages a browser renders (/ui, Bull Board, /docs): a Content-Security-Policy that loads only our
// own files, and no framing by any site (frame-ancestors, and X-Frame-Options for older browsers), so a page
// elsewhere cannot overlay the fork, snapshot and board buttons and trick a signed-in user into pressing them.
import type { MiddlewareHandler } from "hono";

const policy = (directives: Record<string, string>) =>
  Object.entries(directives)
    .map(([name, value]) => `${name} ${value}`)
    .join("; ");

const COMMON = {
  "default-src": "'self'",
  "script-src": "'self'",
  "connect-src": "'self'",
  "img-src": "'self' data:",
  "object-src": "'none'",
  "form-action": "'self'",
  "frame-ancestors": "'none'",
};

/** The dashboard: our modules and stylesheet, nothing inline. */
export const UI_CSP = policy({ ...COMMON, "style-src": "'self'", "base-uri": "'none'" });
/** Bull Board and Swagger UI style elements inline; Bull Board sets a <base>. Scripts stay external only. */
export const THIRD_PARTY_PAGE_CSP = policy({
  ...COMMON,
  "style-src": "'self' 'unsafe-inline'",
  "font-src": "'self' data:",
  "base-uri": "'self'",
});

export function pageSecurityHeaders(contentSecurityPolicy: string): MiddlewareHandler {
  return async (c, next) => {
    await next();
    c.res.headers.set("content-security-policy", contentSecurityPolicy);
    c.res.headers.set("x-frame-options", "DENY");
    c.res.headers.set("x-content-type-options", "nosniff");
    c.res.headers.set("referrer-policy", "no-referrer");
  };
}
