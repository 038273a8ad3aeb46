// The standard places of a device install (issue 13), as OVS, FRR and VPP
// use them: configuration in /etc/nvedge, state in /var/lib/nvedge, the admin
// socket in /run/nvedge. systemd's StateDirectory= / RuntimeDirectory= /
// ConfigurationDirectory= set $STATE_DIRECTORY, $RUNTIME_DIRECTORY and
// $CONFIGURATION_DIRECTORY, which win; $NVEDGE_STATE_DIR, $NVEDGE_RUN_DIR and
// $NVEDGE_CONFIG_DIR win over those (tests, a lab without root).
import { join } from "node:path";

const env = (...names: string[]) => {
  for (const n of names) {
    const v = process.env[n];
    if (v) return v.split(":")[0]; // systemd lists several directories with ':'
  }
  return undefined;
};

export function stateDir(): string {
  return env("NVEDGE_STATE_DIR", "STATE_DIRECTORY") ?? "/var/lib/nvedge";
}

export function runDir(): string {
  return env("NVEDGE_RUN_DIR", "RUNTIME_DIRECTORY") ?? "/run/nvedge";
}

export function configDir(): string {
  return env("NVEDGE_CONFIG_DIR", "CONFIGURATION_DIRECTORY") ?? "/etc/nvedge";
}

/** The NVE's store when --store is not given. */
export const defaultStore = () => stateDir();
/** The NVE's admin socket when neither --admin-socket nor --store is given; `nvedge show` looks here too. */
export const defaultAdminSocket = () => process.env.NVEDGE_SOCKET || join(runDir(), "nvedge.sock");
/** The NVE's configuration when --config is not given. */
export const defaultConfig = () => join(configDir(), "nvedge.json");
/** The IMA's store and configuration. */
export const defaultImaStore = () => join(stateDir(), "ima");
export const defaultImaConfig = () => join(configDir(), "ima.json");
