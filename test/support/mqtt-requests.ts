// A requester in tests over an already connected MQTT client: requests on one
// topic, each answered on another with its id (PROTOCOL.md §2, §6).
import type { MqttClient } from "mqtt";

/** Subscribes `c` to `rsp`; `req` publishes one request on `reqTopic` and waits up to `ms` for the answer with its id. */
export async function mqttRequests(c: MqttClient, o: { who: string; reqTopic: string; rsp: string }, ms = 10_000) {
  await c.subscribeAsync(o.rsp, { qos: 1 });
  let n = 0;
  const req = (op: string, body: Record<string, unknown> = {}) => new Promise<any>((resolve, reject) => {
    const id = `${o.who}-${++n}`;
    const t = setTimeout(() => { c.off("message", on); reject(new Error(`${o.who}: no answer to ${op} within ${ms} ms`)); }, ms);
    const on = (topic: string, p: Buffer) => {
      if (topic !== o.rsp) return;
      const r = JSON.parse(p.toString());
      if (r.id !== id) return;
      clearTimeout(t);
      c.off("message", on);
      resolve(r);
    };
    c.on("message", on);
    c.publish(o.reqTopic, JSON.stringify({ id, op, ...body }), { qos: 1 });
  });
  return { c, req };
}

/** An IMA requester (an NVE or an operator, PROTOCOL.md §6): ima/req/{who}, answered on ima/rsp/{who}. */
export function imaRequests(c: MqttClient, who: string, ms = 10_000) {
  return mqttRequests(c, { who, reqTopic: `nvo3/v1/ima/req/${who}`, rsp: `nvo3/v1/ima/rsp/${who}` }, ms);
}
