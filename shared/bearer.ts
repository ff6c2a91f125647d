// The one reader of `Authorization: Bearer <token>` headers: the API's keys and the hosts' payload tokens.

/** The token of a bearer header, or undefined when the header is absent or of another form. */
export function bearerToken(header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
}
