// The least-privilege Redis user every Snapfleet process can run as: keys and channels under its prefix only, every
// data command BullMQ and we use (scripts included), nothing administrative or dangerous except INFO (BullMQ reads
// the server version from it). docs/security.md quotes this rule; test/fleet-secure.test.ts runs a fleet under it.

/** The arguments of `ACL SETUSER` for user `name` with `password`, confined to `prefix`. */
export function snapfleetAclRule(name: string, password: string, prefix: string): string[] {
  return [
    name,
    "reset",
    "on",
    `>${password}`,
    `~${prefix}:*`,
    `&${prefix}:*`,
    "+@all",
    "-@admin",
    "-@dangerous",
    "+info",
    // Both empty every user's script or function cache, not just ours.
    "-script|flush",
    "-function|flush",
  ];
}
