// `nvedge agent run`: the agent library behind a local control socket (unix,
// JSON lines, mode 0600) that the one-shot commands (`nvedge agent attach|…`)
// and hypervisor hooks talk to. One request → one response:
//   {"cmd":"attach","vnic":UUID,"vn":REF,"addrs":[{mac,ips?}],"tag"?:N,"migration"?:BOOL,"port"?:OVSPORT}
//   {"cmd":"connect","vnic","vn","tag"?,"activate"?,"port"?}  {"cmd":"detach","vnic","vn"?}
//   {"cmd":"associate"|"disassociate","vnic","vn","addrs"}
//   {"cmd":"activate","vnic","migration"?}  {"cmd":"deactivate","vnic","reason"}
//   {"cmd":"migrate-out","vnic"}  {"cmd":"migrate-in","vnic","vns":[{vn,addrs,tag?,port?}]}
//   {"cmd":"show"}  {"cmd":"resync"}
// → {"ok":true,"result":…} | {"ok":false,"error":{"code","message","field"?}}
import { createServer, connect, type Server } from "node:net";
import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { Agent, AgentError, type AgentOptions } from "./agent.js";
import type { VnRef } from "../protocol/types.js";

type Msg = Record<string, any>;

async function handle(agent: Agent, m: Msg): Promise<unknown> {
  const vnic = m.vnic as string;
  const vn = m.vn as VnRef;
  switch (m.cmd) {
    case "attach": return agent.attach(vnic, vn, m.addrs ?? [], { tag: m.tag, migration: m.migration, port: m.port });
    case "connect": return agent.connect(vnic, vn, { tag: m.tag, activate: m.activate, port: m.port });
    case "detach": return agent.detach(vnic, m.vn);
    case "associate": return agent.associate(vnic, vn, m.addrs ?? []);
    case "disassociate": return agent.disassociate(vnic, vn, m.addrs ?? []);
    case "activate": return agent.activate(vnic, { migration: m.migration });
    case "deactivate": return agent.deactivate(vnic, m.reason);
    case "migrate-out": return agent.migrateOut(vnic);
    case "migrate-in": return agent.migrateIn(vnic, m.vns ?? []);
    case "resync": return agent.resync();
    case "show": {
      const nve = await agent.show().catch((e: Error) => ({ error: e.message }));
      return { hv: agent.o.hv, nve: agent.o.nve, connected: agent.connected, bootId: agent.nveBootId, desired: [...agent.desired.values()], driver: agent.driver.name, ports: agent.portState(), nveView: nve };
    }
    default: throw new AgentError("unknown-op", `unknown command ${JSON.stringify(m.cmd)}`);
  }
}

export interface AgentDaemon { agent: Agent; socketPath: string; close(): Promise<void> }

export async function startAgentDaemon(o: AgentOptions & { socketPath: string }): Promise<AgentDaemon> {
  if (existsSync(o.socketPath)) {
    const live = await new Promise<boolean>((res) => {
      const s = connect(o.socketPath, () => { s.destroy(); res(true); });
      s.on("error", () => res(false));
    });
    if (live) throw new Error(`${o.socketPath}: another agent is already listening there`);
    unlinkSync(o.socketPath);
  }
  const agent = await Agent.start(o);
  const server: Server = createServer((sock) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("error", () => {});
    sock.on("data", (d: string) => {
      buf += d;
      if (buf.length > 4 << 20) return sock.destroy();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let m: Msg;
        try {
          m = JSON.parse(line);
        } catch {
          sock.write(JSON.stringify({ ok: false, error: { code: "bad-request", message: "not JSON" } }) + "\n");
          continue;
        }
        handle(agent, m).then(
          (result) => sock.write(JSON.stringify({ ok: true, result: result ?? null }) + "\n"),
          (e) => sock.write(JSON.stringify({ ok: false, error: e instanceof AgentError ? { code: e.code, message: e.message, field: e.field } : { code: "internal", message: (e as Error).message } }) + "\n"),
        );
      }
    });
  });
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(o.socketPath, () => res());
  });
  chmodSync(o.socketPath, 0o600);
  return {
    agent, socketPath: o.socketPath,
    async close() {
      await new Promise<void>((res) => server.close(() => res()));
      try { unlinkSync(o.socketPath); } catch { /* gone */ }
      await agent.stop();
    },
  };
}

export { daemonRequest } from "./control-client.js";
