// End to end through `nvedge run --io afpacket` with every offload at its
// default (issue 11): a VM's TCP (partial checksums, TSO super-frames) into a
// VXLAN tunnel to a host behind the Linux kernel's VXLAN device, and the
// kernel VTEP's TCP (UDP-tunnel GSO super-frames, partial outer checksums)
// back, over an IPv4 and over an IPv6 underlay. No gateway, no gatewayMac, no
// static neighbour anywhere: the remote VTEP is on the NVE's underlay subnet,
// nvedge resolves it by ARP / ND and answers the kernel's ARP / NS for its own
// address (assembly/pipeline/host.ts, host/underlay/resolver.ts). iperf3 runs
// 2 s each way (bounded; its rate is bench/tcp.ts's business, not asserted).
// VM -> remote, a VM's TSO super-frame is encapsulated whole and leaves as
// ONE VXLAN frame with a UDP-tunnel GSO request through the worker's tunnel
// TX tap (host/io/tunnel-output.ts); with underlay.tunnelGso "off" (as on a
// kernel without the tap path) it is cut in software as before, and TCP
// still works.
// The pair lab (host/lab/pair.ts) is built in test-made `nvl-` namespaces
// and removed even on failure.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync } from "node:fs";
import { requireRootAnd, requireTool } from "./support/tools.js";
import { pairUp, pairDown, startNvedge, iperf, pairStore, type PairTopo, type Dut } from "../host/lab/pair.js";
import { shAsync } from "../host/sys/sh.js";
import { BIN, sniff } from "./support/lab-fixture.js";

interface IoCounters {
  gsoFrames: number; gsoSegments: number; gsoBad: number; csumNotReady: number; oversize: number;
  gsoWholeSent: number; gsoWholeStale: number; gsoWholeErrors: number; txFrames: number; txBytes: number;
  gsoTunnelSent: number; gsoTunnelErrors: number;
}
interface Shown {
  io: Record<string, IoCounters>;
  counters: { drops: Record<string, number> };
  underlay: { mode: string; neighbours: { ip: string; mac?: string; state: string }[]; remotes: { nve: string; onLink: boolean; macs: string[] }[] };
}

/**
 * `nvedge show counters`. The admin socket comes up after forwarding starts
 * (startNvedge returns once frames flow; under load the broker and the
 * socket followed 3 s later): a missing socket is waited for, 20 s at most.
 */
async function shown(t: PairTopo): Promise<Shown> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await shAsync([process.execPath, BIN, "show", "counters", "--json", "--store", pairStore(t)], { timeoutMs: 15_000, allowFail: true });
    if (r.code === 0) return JSON.parse(r.stdout) as Shown;
    if (!/ENOENT/.test(r.stderr) || Date.now() > deadline) throw new Error(`nvedge show counters (exit ${r.code}): ${r.stderr.trim()}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

/** Drop reasons that would mean an offloaded frame was lost (a partial checksum, a GSO super-frame, its size). */
const OFFLOAD_DROPS = ["bad-udp-checksum", "bad-ip-checksum", "bad-vnet-header", "bad-gso-size", "gso-unsupported", "mtu-exceeded", "frame-too-long", "truncated"];

const ping = async (ns: string, dst: string) => {
  const r = await shAsync(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", dst], { ns, allowFail: true, timeoutMs: 10_000 });
  return { received: Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0), out: r.stdout + r.stderr };
};

/** The remote VTEP's underlay link's receive counters (the kernel's: a GSO skb counts once, with its whole length). */
async function remoteRx(t: PairTopo): Promise<{ packets: number; bytes: number }> {
  const j = JSON.parse((await shAsync(["ip", "-j", "-s", "link", "show", "dev", t.remote.underlay], { ns: t.remote.ns })).stdout)[0];
  return { packets: j.stats64.rx.packets as number, bytes: j.stats64.rx.bytes as number };
}

const BPF = requireTool("libbpf-dev", () => existsSync("/usr/include/bpf/bpf_helpers.h"), "the pair lab's access tag (tc-BPF, bench/bpf/vlan.c)");
if (BPF && requireRootAnd(["ip", "tc", "clang", "iperf3", "ping", "tcpdump"], "TCP and an IPv6 underlay end to end through nvedge (network namespaces)")) {
  for (const [family, tunnelGso] of [[4, "auto"], [6, "auto"], [4, "off"]] as const) {
    const whole = tunnelGso === "auto";
    test(`IPv${family} underlay, offloads on, no gateway/gatewayMac/static neighbour${whole ? "" : ", underlay.tunnelGso off"}: ping and iperf3 TCP both ways between a VM and a kernel VXLAN host; the VM's super-frames ${whole ? "encapsulated whole and sent as one VXLAN frame each through the tunnel TX tap" : "cut in software"}, the kernel VTEP's decapsulated whole and sent to the VM as one frame each, none dropped; no tunnel frame to broadcast`, async () => {
      let t: PairTopo | undefined;
      let dut: Dut | undefined;
      try {
        t = await pairUp({ family });
        // Every tunnel frame nvedge sends from its start on, the first ones
        // (sent as soon as the remote is resolved) included: none to broadcast.
        const cap = await sniff(t.remote.ns, t.remote.underlay, { direction: "in", filter: ["udp", "dst", "port", "4789"], timeoutMs: 60_000 });
        dut = await startNvedge(t, { tunnelGso });
        const a = await ping(t.vm.ns, t.remote.hostIp);
        const b = await ping(t.remote.ns, t.vm.ip);
        const tunnel = await cap.stop();
        const remMac = JSON.parse((await shAsync(["ip", "-j", "link", "show", "dev", t.remote.underlay], { ns: t.remote.ns })).stdout)[0].address as string;
        assert.ok(tunnel.length >= 6, `tunnel frames captured (${tunnel.length})`);
        const dsts = new Set(tunnel.map((f) => [...f.subarray(0, 6)].map((x) => x.toString(16).padStart(2, "0")).join(":")));
        assert.equal([...dsts], [remMac], "every tunnel frame went to the remote VTEP's resolved MAC, none to broadcast");
        // On a lost echo, say where nvedge counted it (drops by reason, I/O counters).
        const why = async () => (a.received === 3 && b.received === 3 ? "" : `\nnvedge: ${JSON.stringify(await shown(t!).catch((e: Error) => e.message))}`);
        const lost = await why();
        assert.is(a.received, 3, `VM -> remote host\n${a.out}${lost}`);
        assert.is(b.received, 3, `remote host -> VM\n${b.out}${lost}`);
        const before = await shown(t);
        const remBefore = await remoteRx(t);
        const enc = await iperf(t, "encap", 2);
        const mid = await shown(t);
        const remMid = await remoteRx(t);
        const dec = await iperf(t, "decap", 2);
        const after = await shown(t);
        // TCP moved both ways (at least 1 MiB each: hundreds of full segments).
        assert.ok(enc.bytes >= 1 << 20, `VM -> remote: ${enc.bytes} bytes received`);
        assert.ok(dec.bytes >= 1 << 20, `remote -> VM: ${dec.bytes} bytes received`);
        // The VM's TSO super-frames reached nvedge on the trunk; the kernel
        // VTEP's reached it on the underlay; none was refused, and no drop
        // reason of an offloaded frame moved.
        const d = (port: string, k: keyof IoCounters) => after.io[port][k] - before.io[port][k];
        const dEnc = (port: string, k: keyof IoCounters) => mid.io[port][k] - before.io[port][k];
        const remRx = { packets: remMid.packets - remBefore.packets, bytes: remMid.bytes - remBefore.bytes };
        const log = dut.log?.() ?? "";
        if (whole) {
          // Encapsulated whole (assembly/pipeline/gso.ts, GSO_CAP_TUNNEL on the
          // uplink) and sent as one VXLAN frame each through the tap: the
          // remote VTEP's link received frames far longer than one segment.
          assert.match(log, /encap TCP super-frames sent whole via tap nvtx/, `the log says which output runs: ${log}`);
          assert.ok(dEnc(t.dut.trunk, "gsoWholeSent") > 0 && dEnc(t.dut.underlay, "gsoTunnelSent") > 0,
            `the VM's super-frames went whole through the tap: trunk ${JSON.stringify(mid.io[t.dut.trunk])} underlay ${JSON.stringify(mid.io[t.dut.underlay])}`);
          assert.is(dEnc(t.dut.trunk, "gsoWholeErrors") + dEnc(t.dut.underlay, "gsoTunnelErrors"), 0, `none lost: ${JSON.stringify(mid.io)}`);
          assert.is(dEnc(t.dut.trunk, "gsoFrames"), 0, "no super-frame of the VM's was cut");
          assert.ok(remRx.bytes >= 1 << 20 && remRx.bytes / remRx.packets > 4 * 1518,
            `VM -> remote: the remote VTEP received ${remRx.packets} frames, ${remRx.bytes} bytes (mean ${Math.round(remRx.bytes / remRx.packets)}): tunnel super-frames, not segments`);
        } else {
          assert.match(log, /encap TCP super-frames cut in software \(underlay\.tunnelGso is off\)/, `the log says which output runs: ${log}`);
          assert.ok(dEnc(t.dut.trunk, "gsoFrames") > 0 && dEnc(t.dut.trunk, "gsoSegments") > dEnc(t.dut.trunk, "gsoFrames"),
            `the VM's TSO super-frames were cut on the trunk: ${JSON.stringify(mid.io[t.dut.trunk])}`);
          assert.is(dEnc(t.dut.underlay, "gsoTunnelSent"), 0, "nothing through a tap");
          assert.ok(remRx.bytes / remRx.packets <= 1518 + 50, `VM -> remote: segments of at most the underlay MTU (mean ${Math.round(remRx.bytes / remRx.packets)})`);
        }
        assert.ok(d(t.dut.trunk, "csumNotReady") > 0, "the VM's partial checksums reached nvedge");
        // The kernel VTEP's tunnel-GSO super-frames were decapsulated whole
        // (assembly/pipeline/gso.ts): sent to the trunk as one frame each with
        // a TSO request, so while the remote sent, nvedge's frames to the VM
        // averaged well above the VN's MTU (cut, they would be <= 1518 bytes).
        const ul = after.io[t.dut.underlay];
        assert.ok(d(t.dut.underlay, "gsoWholeSent") > 0, `the kernel VTEP's super-frames went whole: ${JSON.stringify(ul)}`);
        assert.is(d(t.dut.underlay, "gsoWholeStale") + d(t.dut.underlay, "gsoWholeErrors"), 0, `no whole super-frame lost: ${JSON.stringify(ul)}`);
        const trunkTx = { frames: after.io[t.dut.trunk].txFrames - mid.io[t.dut.trunk].txFrames, bytes: after.io[t.dut.trunk].txBytes - mid.io[t.dut.trunk].txBytes };
        assert.ok(trunkTx.bytes >= 1 << 20 && trunkTx.bytes / trunkTx.frames > 4 * 1518,
          `remote -> VM: ${trunkTx.frames} frames, ${trunkTx.bytes} bytes to the trunk (mean ${Math.round(trunkTx.bytes / trunkTx.frames)}): super-frames, not segments`);
        for (const port of [t.dut.trunk, t.dut.underlay]) {
          assert.is(d(port, "gsoBad"), 0, `${port}: no GSO frame refused`);
          assert.is(d(port, "oversize"), 0, `${port}: no super-frame truncated by the ring`);
        }
        for (const k of OFFLOAD_DROPS) assert.is((after.counters.drops[k] ?? 0) - (before.counters.drops[k] ?? 0), 0, `drops ${k}: ${JSON.stringify(after.counters.drops)}`);
        // Resolved on the link by ARP / ND both ways, nothing static.
        const rem = after.underlay.remotes.find((r) => r.nve === t!.remote.ip);
        assert.equal(rem && { onLink: rem.onLink, macs: rem.macs }, { onLink: true, macs: [remMac] }, `nvedge resolved ${t.remote.ip} on the link: ${JSON.stringify(after.underlay)}`);
        assert.is(after.underlay.mode, "routes", "no underlay.gateway: next hops from the kernel's routes");
        const neigh = JSON.parse((await shAsync(["ip", "-j", family === 6 ? "-6" : "-4", "neigh", "show", "dev", t.remote.underlay], { ns: t.remote.ns })).stdout) as { dst: string; lladdr?: string; state: string[] }[];
        const ours = neigh.find((n) => n.dst === t!.dut.ip);
        assert.is(ours?.lladdr, t.dut.mac, `the kernel VTEP learned nvedge's MAC by ${family === 6 ? "ND" : "ARP"}: ${JSON.stringify(neigh)}`);
        assert.not.ok(ours!.state.includes("PERMANENT"), "a learned, not a static, neighbour");
      } finally {
        await dut?.stop();
        if (t) assert.equal(await pairDown(t), [], "every namespace of the pair lab removed");
      }
    });
  }
  test.run();
}
