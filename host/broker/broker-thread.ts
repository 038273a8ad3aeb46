// The embedded broker (host/broker/embedded.ts) on its own worker thread, so
// `nvedge run` spreads MQTT packet handling and the NVE's request processing
// over two cores. The same file is the worker's entry point.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import type { BrokerOptions } from "./embedded.js";
import { workerUrl } from "../paths.js";

type FromBroker = { type: "ready"; url: string; port: number } | { type: "log"; line: string } | { type: "error"; message: string } | { type: "closed" }
  | { type: "reloaded"; error?: string };

export async function startBrokerThread(o: Omit<BrokerOptions, "log">, log: (l: string) => void = () => {}): Promise<{ url: string; port: number; reload(): Promise<void>; close(): Promise<void> }> {
  const w = new Worker(workerUrl("broker-thread"), { workerData: { __brokerThread: true, opts: o } });
  const closed = new Promise<void>((res) => w.once("exit", () => res()));
  const ready = await new Promise<{ url: string; port: number }>((resolve, reject) => {
    w.on("message", (m: FromBroker) => {
      if (m.type === "log") log(m.line);
      else if (m.type === "ready") resolve(m);
      else if (m.type === "error") reject(new Error(m.message));
    });
    w.once("error", reject);
    w.once("exit", (code) => reject(new Error(`the broker thread exited (${code}) before it was ready`)));
  });
  let reloads: { resolve(): void; reject(e: Error): void }[] = [];
  w.on("message", (m: FromBroker) => {
    if (m.type !== "reloaded") return;
    const r = reloads.shift();
    if (m.error) r?.reject(new Error(m.error));
    else r?.resolve();
  });
  return {
    ...ready,
    /** The embedded broker's reload() (password and TLS files), on its thread. */
    reload() {
      return new Promise<void>((resolve, reject) => {
        reloads.push({ resolve, reject });
        w.postMessage({ type: "reload" });
      });
    },
    async close() {
      for (const r of reloads) r.reject(new Error("the broker thread stopped"));
      reloads = [];
      w.postMessage({ type: "close" });
      const t = setTimeout(() => void w.terminate(), 5000);
      await closed;
      clearTimeout(t);
    },
  };
}

if (!isMainThread && parentPort && (workerData as { __brokerThread?: boolean } | undefined)?.__brokerThread === true) {
  const port = parentPort;
  const { startEmbeddedBroker } = await import("./embedded.js");
  try {
    const b = await startEmbeddedBroker({ ...(workerData as { opts: BrokerOptions }).opts, log: (line) => port.postMessage({ type: "log", line }) });
    port.postMessage({ type: "ready", url: b.url, port: b.port });
    port.on("message", async (m: { type: string }) => {
      if (m.type === "reload") {
        try {
          b.reload();
          port.postMessage({ type: "reloaded" });
        } catch (e) {
          port.postMessage({ type: "reloaded", error: (e as Error).message });
        }
        return;
      }
      if (m.type !== "close") return;
      await b.close().catch(() => {});
      port.close();
    });
  } catch (e) {
    port.postMessage({ type: "error", message: (e as Error).message });
    port.close();
  }
}
