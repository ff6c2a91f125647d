// Where a file holds data, found with lseek(SEEK_DATA/SEEK_HOLE) so holes are never read.
import { native } from "./native.ts";

export interface DataExtent {
  start: number;
  end: number;
}

/** The file's data extents in order; a filesystem without hole support reports one extent, the whole file. */
export function findDataExtents(fd: number, size: number): DataExtent[] {
  const extents: DataExtent[] = [];
  let position = 0;
  while (position < size) {
    const start = native.seekData(fd, position);
    if (start < 0 || start >= size) break;
    const hole = native.seekHole(fd, start);
    const end = hole < 0 ? size : Math.min(hole, size);
    extents.push({ start, end });
    position = end;
  }
  return extents;
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
