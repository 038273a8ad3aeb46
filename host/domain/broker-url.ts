// The broker URLs every nvedge process takes, in one place for the commands
// and the configuration schemas (no dependency: the NVE's configuration is
// read before anything MQTT is loaded, issue 15's restart to forwarding).
/**
 * The broker URLs every nvedge client takes (the NVE's and the IMA's
 * `broker`, `--broker` of each command): MQTT over TCP or TLS (`tcp://` is
 * MQTT.js's alias of `mqtt://`), WebSockets, and MQTT over a Unix socket
 * (`mqtt+unix:///PATH`, `mqtts+unix:///PATH`: MQTT.js's spelling, served by
 * it and by host/protocol/mqtt-lean.ts) for a broker on the same host. The JSON schemas'
 * `pattern` is this one.
 */
export const BROKER_URL_PATTERN = "^(mqtts?|wss?|tcp|mqtts?\\+unix)://";
const BROKER_URL_RE = new RegExp(BROKER_URL_PATTERN);

/** The error a command gives for a broker URL of another scheme, or undefined. */
export function brokerUrlError(url: string, what = "--broker"): string | undefined {
  return BROKER_URL_RE.test(url) ? undefined : `${what} ${JSON.stringify(url)}: expected mqtt://, mqtts://, ws://, wss://, tcp:// or mqtt+unix:///PATH`;
}
