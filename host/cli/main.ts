// The command line of INTERFACES.md. Each command lives in its own module and
// is loaded only when used, so `nvedge pcap` never loads MQTT and `nvedge run`
// never loads the lab. Exit codes: 2 bad usage or configuration, 1 runtime failure.
import { ConfigError } from "../config/load.js";
import { UsageError } from "./args.js";

type Command = (argv: string[]) => Promise<number | void>;

const commands: Record<string, { help: string; load: () => Promise<Command> }> = {
  pcap: { help: "nvedge pcap --config FILE --in PORT=FILE ... --out-dir DIR", load: async () => (await import("./pcap.js")).pcapCommand },
  trace: { help: "nvedge trace --config FILE --port PORT --frame HEX", load: async () => (await import("./trace.js")).traceCommand },
  run: { help: "nvedge run --config FILE [--broker URL] [--io afpacket|none] [--workers N] [--store DIR]", load: async () => (await import("./run.js")).runCommand },
  agent: { help: "nvedge agent run|attach|detach|activate|deactivate|show ...", load: async () => (await import("./agent.js")).agentCommand },
  show: { help: "nvedge show bindings|vns|ports|counters [--json]", load: async () => (await import("./show.js")).showCommand },
  lab: { help: "nvedge lab up|down|demo", load: async () => (await import("./lab.js")).labCommand },
  ima: { help: "nvedge ima run [--config FILE] [--broker URL] [--store DIR]", load: async () => (await import("./ima.js")).imaCommand },
  vn: { help: "nvedge vn create|delete|list|set-profile|frozen|unfreeze [--broker URL] ...", load: async () => (await import("./vn.js")).vnCommand },
};

export function registerCommand(name: string, help: string, load: () => Promise<Command>): void {
  commands[name] = { help, load };
}

function usage(): string {
  return ["usage: nvedge <command> [options]", "", "commands:", ...Object.values(commands).map((c) => "  " + c.help)].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
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
