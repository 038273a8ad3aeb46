// systemd's service notification protocol (sd_notify(3)) for Type=notify
// units (etc/systemd/, issue 13): READY=1 once the NVE forwards and answers,
// RELOADING=1/READY=1 around a reload, STOPPING=1, STATUS=, and WATCHDOG=1
// every half WatchdogSec when the unit has one ($WATCHDOG_USEC).
//
// Node cannot send on an AF_UNIX datagram socket, so the message goes through
// systemd's own `systemd-notify` tool (always there where systemd is), with
// --pid naming this process; the units set NotifyAccess=all because the
// sender is a child. Outside systemd ($NOTIFY_SOCKET unset) nothing happens.
import { execFile } from "node:child_process";

export interface Notifier {
  readonly active: boolean;
  ready(status?: string): void;
  reloading(): void;
  stopping(): void;
  status(s: string): void;
  close(): void;
}

export function systemdNotifier(log: (l: string) => void = () => {}): Notifier {
  const sock = process.env.NOTIFY_SOCKET;
  const active = !!sock;
  let warned = false;
  const send = (...fields: string[]) => {
    if (!active) return;
    execFile("systemd-notify", [`--pid=${process.pid}`, ...fields], { timeout: 5000 }, (e) => {
      if (e && !warned) {
        warned = true;
        log(`systemd: warning: systemd-notify failed: ${e.message}`);
      }
    });
  };
  let dog: NodeJS.Timeout | undefined;
  const usec = Number(process.env.WATCHDOG_USEC);
  const pidOk = !process.env.WATCHDOG_PID || Number(process.env.WATCHDOG_PID) === process.pid;
  return {
    active,
    ready(status) {
      send("--ready", ...(status ? [`--status=${status}`] : []));
      if (active && pidOk && usec > 0 && !dog) {
        // Sent from the event loop: a loop stuck for WatchdogSec gets the unit restarted.
        dog = setInterval(() => send("WATCHDOG=1"), Math.max(1000, usec / 2000));
        dog.unref();
      }
    },
    reloading: () => send("RELOADING=1"),
    stopping: () => send("STOPPING=1"),
    status: (s) => send(`--status=${s}`),
    close() {
      if (dog) clearInterval(dog);
      dog = undefined;
    },
  };
}
