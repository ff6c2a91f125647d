// Where copies of a snapshot's payload live besides its owning host: a Redis set of host ids per snapshot, written
// by the host that pulled the copy and read by the API when the snapshot is deleted.
export const replicaSetKey = (prefix: string, snapshotId: string) => `${prefix}:snapshot-replicas:${snapshotId}`;
