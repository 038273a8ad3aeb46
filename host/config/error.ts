// A configuration file's error: the file, the key at fault and why (the CLI
// exits 2 on it, host/cli/main.ts). Apart from ./load.ts so that importing it
// costs nothing: every `nvedge` command's dispatcher checks for it, and most
// commands (show, counters, agent, vn ...) never read a configuration file.
export class ConfigError extends Error {
  constructor(public file: string, public key: string, message: string) {
    super(`${file}: ${key ? key + ": " : ""}${message}`);
  }
}
