// The command line of INTERFACES.md. Each command lives in its own module and
// is loaded only when used, so `nvedge pcap` never loads MQTT and `nvedge run`
// never loads the lab. Exit codes: 2 bad usage or configuration, 1 runtime failure.
import { ConfigError } from "../config/error.js";
import { UsageError } from "./args.js";
import { VERSION } from "../version.js";

type Command = (argv: string[]) => Promise<number | void>;

const commands: Record<string, { help: string; load: () => Promise<Command> }> = {
  pcap: { help: "nvedge pcap --config FILE --in PORT=FILE ... --out-dir DIR", load: async () => (await import("./pcap.js")).pcapCommand },
  trace: { help: "nvedge trace --config FILE --port PORT --frame HEX", load: async () => (await import("./trace.js")).traceCommand },
  run: { help: "nvedge run --config FILE [--broker URL] [--io afpacket|afxdp|none] [--workers N] [--store DIR] [--metrics HOST:PORT] [--log-level L]", load: async () => (await import("./run.js")).runCommand },
  agent: { help: "nvedge agent run|attach|detach|activate|deactivate|show ...", load: async () => (await import("./agent.js")).agentCommand },
  show: { help: "nvedge show [summary|bindings|vns|ports|counters|remotes|hypervisors] [--json]", load: async () => (await import("./show.js")).showCommand },
  lab: { help: "nvedge lab up|down|demo", load: async () => (await import("./lab.js")).labCommand },
  ima: { help: "nvedge ima run [--config FILE] [--broker URL] [--store DIR] [--password-file FILE]", load: async () => (await import("./ima.js")).imaCommand },
  vn: { help: "nvedge vn create|delete|list|set-profile|frozen|unfreeze|disconnect ...", load: async () => (await import("./vn.js")).vnCommand },
  vnic: { help: "nvedge vnic remove VNIC [--reason TEXT]", load: async () => (await import("./admin-cmds.js")).vnicCommand },
  drain: { help: "nvedge drain", load: async () => (await import("./admin-cmds.js")).drainCommand },
  counters: { help: "nvedge counters clear", load: async () => (await import("./admin-cmds.js")).countersCommand },
  reload: { help: "nvedge reload", load: async () => (await import("./admin-cmds.js")).reloadCommand },
  "log-level": { help: "nvedge log-level [LEVEL]", load: async () => (await import("./admin-cmds.js")).logLevelCommand },
  config: { help: "nvedge config check FILE [--json]", load: async () => (await import("./config.js")).configCommand },
  capture: { help: "nvedge capture --drops [--reason R] [--count N] -w FILE", load: async () => (await import("./capture.js")).captureCommand },
};

function usage(): string {
  return ["usage: nvedge <command> [options]      (nvedge --version; nvedge <command> --help)", "", "commands:", ...Object.values(commands).map((c) => "  " + c.help)].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`nvedge ${VERSION}`);
    return 0;
  }
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`nvedge: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  try {
    const r = await (await cmd.load())(rest);
    return typeof r === "number" ? r : 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      console.error(`nvedge ${name}: ${e.message}`);
      return 2;
    }
    console.error(`nvedge ${name}: ${(e as Error).message}`);
    return 1;
  }
}
