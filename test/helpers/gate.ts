import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback server that steps call from their user code (/<name>): a call is proof the step's code runs,
 * and it is held until the test opens that gate. Nothing depends on speed.
 */
export interface Gate {
  server: Server;
  url: string;
  /** Names called so far, in order. */
  calls: string[];
  /** When each name was first called (epoch ms). */
  callTimes: Map<string, number>;
  open(name: string, answer: string): void;
}

export async function startGate(): Promise<Gate> {
  const held = new Map<string, (answer: string) => void>();
  const opened = new Map<string, string>();
  const calls: string[] = [];
  const callTimes = new Map<string, number>();
  const server = createServer((req, res) => {
    const name = decodeURIComponent(req.url?.slice(1) ?? '');
    calls.push(name);
    if (!callTimes.has(name)) callTimes.set(name, Date.now());
    const ready = opened.get(name);
    if (ready !== undefined) res.end(ready);
    else held.set(name, (answer) => res.end(answer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    callTimes,
    open: (name, answer) => {
      opened.set(name, answer);
      held.get(name)?.(answer);
      held.delete(name);
    },
  };
}

/** A step's command that calls the gate and succeeds only when the answer is "ok". */
export const gateCall = (gate: Gate, name: string) =>
  `${process.execPath} -e 'fetch("${gate.url}/${name}").then((r) => r.text()).then((a) => process.exit(a === "ok" ? 0 : 1))'`;
