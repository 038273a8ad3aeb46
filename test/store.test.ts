// The in-memory Store runs the shared conformance suite (test/support/store-conformance.ts).
import { storeConformance } from "./support/store-conformance.js";
import { MemoryStore, newMemoryBacking } from "../host/store/memory.js";

storeConformance("memory", {
  fresh: async () => {
    const backing = newMemoryBacking();
    return { open: (v?: number) => MemoryStore.open({ backing, schemaVersion: v }), cleanup: async () => {} };
  },
});
