// An IMA requester in tests (an NVE or an operator, PROTOCOL.md §6): requests
// on nvo3/v1/ima/req/{who}, each answered on nvo3/v1/ima/rsp/{who} with its id.
import type { MqttClient } from "mqtt";

/** Subscribes `c` (connected as `who`) to its response topic; `req` sends one request and waits up to `ms` for its answer. */
export async function imaRequests(c: MqttClient, who: string, ms = 10_000) {
  const rsp = `nvo3/v1/ima/rsp/${who}`;
  await c.subscribeAsync(rsp, { qos: 1 });
  let n = 0;
  const req = (op: string, body: Record<string, unknown> = {}) => new Promise<any>((resolve, reject) => {
    const id = `${who}-${++n}`;
    const t = setTimeout(() => { c.off("message", on); reject(new Error(`${who}: no answer to ${op} within ${ms} ms`)); }, ms);
    const on = (topic: string, p: Buffer) => {
      if (topic !== rsp) return;
      const r = JSON.parse(p.toString());
      if (r.id !== id) return;
      clearTimeout(t);
      c.off("message", on);
      resolve(r);
    };
    c.on("message", on);
    c.publish(`nvo3/v1/ima/req/${who}`, JSON.stringify({ id, op, ...body }), { qos: 1 });
  });
  return { c, req };
}
