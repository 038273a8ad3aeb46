// The error DataPlane.apply throws for an op it refuses, in a module of its
// own: the packet I/O pool (host/io/afpacket.ts) rebuilds it from a worker's
// message and is loaded before the workers are spawned (issue 15), which
// must not load the whole data plane for one class.

export class DataPlaneError extends Error {
  constructor(public index: number, public field: string, message: string) {
    super(`op ${index}${field ? ` (${field})` : ""}: ${message}`);
  }
}
