// The Node/V8 options `nvedge run` is started with: by the firmware's
// launcher (firmware/build.mjs), the systemd unit (etc/systemd/nvedge.service,
// NODE_OPTIONS) and the control bench (bench/control.ts), from this one list.
// They cannot be set from inside the process: V8 sizes its heap when the
// isolate is made, before any of nvedge's code runs.
//
// --max-semi-space-size=32: the young generation's semi-spaces may grow to
// 32 MiB (V8 11's default on x64: 16). Every request leaves ~12 KB of
// short-lived objects (the Txn, its overlays, the decoded request, the
// answer); a scavenge copies what is still alive (the requests in flight, the
// records the changes keep) and promotes what survived one before. Twice the
// space: half the scavenges, the in-flight requests copied and promoted half
// as often. Issue 15 session 9 (bench/README.md "control"): the NVE's CPU
// per warm attach, alone on a core, lower in 5 of 6 alternating pairs
// (medians 60.5 -> 57 µs at load 5-6; with --min-semi-space-size=32 too, 58
// -> 51 over five rounds at load 2.4-4.4); 64 was worse (twice the fresh
// pages a short burst touches, and a first touch is dear on a VM). Its cost:
// up to 32 MiB more memory under load (from- and to-space), given back when
// idle.
export const RUN_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=32"];
