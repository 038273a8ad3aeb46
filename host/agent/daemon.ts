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
import { serveJsonLines, claimSocketPath } from "../ipc/jsonl-socket.js";
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
  const inUse = "another agent is already listening there";
  // refuse a live socket before the agent connects anywhere
  await claimSocketPath(o.socketPath, inUse);
  const agent = await Agent.start(o);
  let srv;
  try {
    srv = await serveJsonLines({
      path: o.socketPath, inUse, maxBytes: 4 << 20,
      handle: (m) => handle(agent, m as Msg),
      toError: (e) => e instanceof AgentError ? { code: e.code, message: e.message, field: e.field } : { code: "internal", message: (e as Error).message },
    });
  } catch (e) {
    await agent.stop();
    throw e;
  }
  const server = srv;
  return {
    agent, socketPath: o.socketPath,
    async close() {
      await server.close();
      await agent.stop();
    },
  };
}

export { daemonRequest } from "./control-client.js";
