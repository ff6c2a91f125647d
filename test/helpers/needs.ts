// Cases that need a machine part (test/helpers/machine-parts.ts): outside CI, skipped when it is missing with the
// reason in their name, so vitest lists them as skipped; in CI never skipped (global set-up already failed the run).
import { describe, inject, it } from "vitest";
import { IN_CI, type MachinePart, missingPartMessage } from "./machine-parts.ts";

/** Why `part` is missing here, "" when it is present; throws in CI, where a missing part is a broken install. */
export function missingReason(part: MachinePart): string {
  const reason = inject("missingParts")[part];
  if (reason && IN_CI) throw new Error(missingPartMessage(part, reason));
  return reason;
}

const gatedTitle = (part: MachinePart, title: string): string => {
  const reason = missingReason(part);
  return reason ? `${title} (skipped: ${missingPartMessage(part, reason)})` : title;
};

/** `describe`, skipped out loud when `part` is missing. */
export function describeWith(part: MachinePart, title: string, body: () => void): void {
  describe.skipIf(missingReason(part) !== "")(gatedTitle(part, title), body);
}

/** `it`, skipped out loud when `part` is missing. */
export function itWith(part: MachinePart, title: string, body: () => Promise<void> | void, timeout?: number): void {
  it.skipIf(missingReason(part) !== "")(gatedTitle(part, title), body, timeout);
}
