// Where a file holds data, found with lseek(SEEK_DATA/SEEK_HOLE) so holes are never read, and all-zero checks.

/** lseek(SEEK_DATA/SEEK_HOLE), from the native addon. */
export interface HoleSeeker {
  /** Next data offset at or after `offset`, or -1 when only a hole remains. */
  seekData(fd: number, offset: number): number;
  /** Next hole offset at or after `offset` (end of file counts as a hole), or -1 past the end. */
  seekHole(fd: number, offset: number): number;
}

/** fallocate(PUNCH_HOLE), from the native addon. */
export interface HolePuncher extends HoleSeeker {
  punchHole(fd: number, offset: number, length: number): void;
}

export interface DataExtent {
  start: number;
  end: number;
}

/** The file's data extents in order; a filesystem without hole support reports one extent, the whole file. */
export function findDataExtents(seeker: HoleSeeker, fd: number, size: number): DataExtent[] {
  const extents: DataExtent[] = [];
  let position = 0;
  while (position < size) {
    const start = seeker.seekData(fd, position);
    if (start < 0 || start >= size) break;
    const hole = seeker.seekHole(fd, start);
    const end = hole < 0 ? size : Math.min(hole, size);
    extents.push({ start, end });
    position = end;
  }
  return extents;
}

/**
 * Punches every range lseek reports as a hole, returning how many. A range QEMU zeroed with fallocate(ZERO_RANGE)
 * reads as a hole but keeps its blocks (unwritten extents), and `fallocate --dig-holes` skips it for that reason.
 */
export function punchHoleRanges(puncher: HolePuncher, fd: number, size: number): number {
  let punched = 0;
  let position = 0;
  for (const extent of [...findDataExtents(puncher, fd, size), { start: size, end: size }]) {
    if (extent.start > position) {
      puncher.punchHole(fd, position, extent.start - position);
      punched++;
    }
    position = extent.end;
  }
  return punched;
}

/** Walks extents for ranges visited in increasing order: the parts of each range that hold data. */
export class ExtentCursor {
  private next = 0;

  constructor(private readonly extents: DataExtent[]) {}

  dataWithin(start: number, end: number): DataExtent[] {
    while (this.next < this.extents.length && this.extents[this.next]!.end <= start) this.next++;
    const parts: DataExtent[] = [];
    for (let index = this.next; index < this.extents.length; index++) {
      const extent = this.extents[index]!;
      if (extent.start >= end) break;
      parts.push({ start: Math.max(extent.start, start), end: Math.min(extent.end, end) });
    }
    return parts;
  }
}

/** The whole file as one extent: for a backend that cannot see holes (its zero chunks are found by reading). */
export function wholeFile(size: number): DataExtent[] {
  return size > 0 ? [{ start: 0, end: size }] : [];
}

const ZERO_RUN = Buffer.alloc(1 << 16);

export function isAllZero(data: Uint8Array): boolean {
  for (let position = 0; position < data.length; position += ZERO_RUN.length) {
    const part = data.subarray(position, position + ZERO_RUN.length);
    if (Buffer.compare(part, ZERO_RUN.subarray(0, part.length)) !== 0) return false;
  }
  return true;
}
