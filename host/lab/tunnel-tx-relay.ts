// The tunnel-TX lab's relay (host/lab/tunnel-tx.ts), on a worker thread: reads
// what the "VM" tap hands over (TSO super-frames with partial checksums, each
// after its virtio-net header), puts the outer header right before each
// frame in the same buffer - no copy of the payload - and sends the batch
// through host/io/tuntx.ts: a super-frame as ONE frame with UDP-tunnel GSO,
// anything else as TX_PLAIN (checksums completed by the module). This is the
// encap output nvedge's data plane would drive (read, prepend, send), without
// the data plane, to see the TX path's own ceiling.
import { parentPort, workerData, Worker } from "node:worker_threads";
import { loadTunTxAddon, TunTx, putTxDesc, TX_DESC, TX_STATUS, TX_INNER6, TX_INNER_UDP, TX_OUTER6, TX_UDP_CSUM, TX_ECN, TX_PLAIN, type TunTxStats } from "../io/tuntx.js";
import type { TxLab } from "./tunnel-tx.js";
import { outerHeader } from "./tunnel-tx.js";

interface RelayInit { vmTap: string; txTap: string; uplink: string; nsPath: string; outer: Uint8Array; outerTh: number; outer6: boolean; udpCsum: boolean; stop: SharedArrayBuffer; deadline: number }

export interface RelayResult {
  /** Frames read from the VM tap; of them not TCP/UDP over IP (not relayed); super-frames and plain frames sent; refusals by status. */
  read: number; skipped: number; superFrames: number; plainFrames: number; refused: Record<string, number>;
  tx: TunTxStats;
}

const BATCH = 16;
const SLOT = 1 << 17;
const SLOTS = 4096;
const LENS = 1024;
const INNER = 128; // the inner frame's offset in its slot: room for the 70-byte IPv6 outer header before it
const VNET = 12;   // the VM tap's virtio_net_hdr_v1 (tuntx_lab.c)

function relay(w: RelayInit): RelayResult {
  const a = loadTunTxAddon();
  const vm = a.labOpen(w.vmTap, w.nsPath);
  let tx: TunTx | undefined;
  try {
    tx = TunTx.open(w.txTap, w.uplink, { netns: w.nsPath, udpCsum: w.udpCsum });
    parentPort!.postMessage({ ready: true });
    const mem = new ArrayBuffer(SLOTS + (BATCH + 1) * SLOT); // + 1: the last read may run past its slot by INNER - VNET (frames are at most 64 KiB)
    const u = new Uint8Array(mem), dv = new DataView(mem);
    const stop = new Int32Array(w.stop);
    const O = w.outer.length;
    const base = (w.outer6 ? TX_OUTER6 : 0) | (w.udpCsum ? TX_UDP_CSUM : 0);
    const r: RelayResult = { read: 0, skipped: 0, superFrames: 0, plainFrames: 0, refused: {}, tx: tx.stats() };
    while (Atomics.load(stop, 0) === 0 && Date.now() < w.deadline) {
      const n = a.labRead(vm, mem, SLOTS + INNER - VNET, SLOT, BATCH, LENS, 20);
      r.read += n;
      let k = 0;
      for (let i = 0; i < n; i++) {
        const s = SLOTS + i * SLOT, f = s + INNER, len = dv.getUint32(LENS + 4 * i, true) - VNET;
        const gsoType = u[f - VNET + 1], gsoSize = dv.getUint16(f - VNET + 4, true);
        const et = (u[f + 12] << 8) | u[f + 13];
        const v6 = et === 0x86dd;
        if (len < 34 || (et !== 0x0800 && !v6)) { r.skipped++; continue; }
        const ihl = v6 ? 40 : (u[f + 14] & 15) * 4, proto = v6 ? u[f + 20] : u[f + 23];
        if (proto !== 6 && proto !== 17) { r.skipped++; continue; }
        const thl = proto === 6 ? (u[f + 14 + ihl + 12] >> 4) * 4 : 8;
        u.set(w.outer, f - O);
        const hdrLen = O + 14 + ihl + thl, dataLen = O + len - hdrLen;
        let flags = base | (v6 ? TX_INNER6 : 0) | (proto === 17 ? TX_INNER_UDP : 0);
        if (gsoType !== 0 && dataLen > gsoSize) { flags |= gsoType & 0x80 ? TX_ECN : 0; r.superFrames++; } else { flags |= TX_PLAIN; r.plainFrames++; }
        putTxDesc(dv, k * TX_DESC, { hdr: f - O, hdrLen, data: f - O + hdrLen, dataLen, gsoSize, outerTh: w.outerTh, innerNh: O + 14, innerTh: O + 14 + ihl, flags });
        k++;
      }
      if (k && tx.send(mem, 0, k) !== k) {
        for (let j = 0; j < k; j++) {
          const st = TX_STATUS[dv.getUint32(j * TX_DESC + 24, true)] ?? "badFlags";
          if (st !== "ok") r.refused[st] = (r.refused[st] ?? 0) + 1;
        }
      }
    }
    r.tx = tx.stats();
    return r;
  } finally {
    tx?.close();
    a.labClose(vm);
  }
}

if (parentPort && (workerData as { __tunnelTxRelay?: boolean })?.__tunnelTxRelay) {
  try {
    parentPort.postMessage({ done: relay(workerData as RelayInit) });
  } catch (e) {
    parentPort.postMessage({ error: (e as Error).message });
  }
}

export interface Relay {
  /** Stops the relay and resolves with what it did. */
  stop(): Promise<RelayResult>;
}

/**
 * Starts the relay for lab `l` (its taps made in the dut namespace) with the
 * outer header of `encap`; resolves once both taps exist. It stops by itself
 * after `maxSeconds` (bounded).
 */
export function startRelay(l: TxLab, o: { encap?: "vxlan" | "geneve"; maxSeconds?: number; udpCsum?: boolean } = {}): Promise<Relay> {
  const outer = outerHeader(l, o.encap ?? "vxlan");
  const stop = new SharedArrayBuffer(4);
  const init: RelayInit & { __tunnelTxRelay: true } = {
    __tunnelTxRelay: true, vmTap: l.dut.vmTap, txTap: l.dut.txTap, uplink: l.dut.uplink, nsPath: l.dut.nsPath,
    outer: outer.bytes, outerTh: outer.outerTh, outer6: l.family === 6, udpCsum: l.family === 6 || !!o.udpCsum, stop,
    deadline: Date.now() + (o.maxSeconds ?? 120) * 1000,
  };
  const w = new Worker(new URL(import.meta.url), { workerData: init });
  let settle: ((r: RelayResult) => void) | undefined, fail: ((e: Error) => void) | undefined;
  const done = new Promise<RelayResult>((res, rej) => { settle = res; fail = rej; });
  done.catch(() => undefined);
  return new Promise<Relay>((resolve, reject) => {
    w.on("message", (m: { ready?: true; done?: RelayResult; error?: string }) => {
      if (m.ready) resolve({ stop: async () => { Atomics.store(new Int32Array(stop), 0, 1); return done; } });
      if (m.done) settle!(m.done);
      if (m.error) { const e = new Error(`tunnel-tx relay: ${m.error}`); reject(e); fail!(e); }
    });
    w.on("error", (e) => { reject(e); fail!(e); });
    w.on("exit", (c) => { const e = new Error(`tunnel-tx relay exited (${c}) before it finished`); reject(e); fail!(e); });
  });
}
