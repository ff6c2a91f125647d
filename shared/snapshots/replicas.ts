// Where copies of a snapshot's payload live besides its owning host: a Redis set of host ids per snapshot, written
// by the host that holds the copy (at the pull, and again by its reconcile: its disk is the truth, the set is rebuilt
// from it) and read by the API when the snapshot is deleted.
export const replicaSetKey = (prefix: string, snapshotId: string) => `${prefix}:snapshot-replicas:${snapshotId}`;
