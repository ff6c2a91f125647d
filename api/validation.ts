// Request validation failures as the error envelope: which code a failed field gets, and a short message.
import { ApiError, type ErrorCode } from "../shared/errors.ts";

type Issue = { path: PropertyKey[]; message: string };

/** Fields whose failures the reference server reports under a code of their own, wherever they sit in the request. */
const CODE_BY_FIELD: Record<string, ErrorCode> = {
  compression: "invalid_snapshot_compression",
  timeout: "invalid_timeout",
};

export function validationError(issues: ReadonlyArray<Issue>): ApiError {
  const field = issues.flatMap((issue) => issue.path.map(String)).find((name) => name in CODE_BY_FIELD);
  return new ApiError(field ? CODE_BY_FIELD[field]! : "invalid_request", describeIssues(issues));
}

function describeIssues(issues: ReadonlyArray<Issue>): string {
  return issues
    .slice(0, 5)
    .map((issue) => (issue.path.length ? `${issue.path.map(String).join(".")}: ${issue.message}` : issue.message))
    .join("; ");
}
