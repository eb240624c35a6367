// The local sandbox spawner: a small node process that starts the runners for LocalSandboxes.
// A fork copies the forking process's page tables: from the engine (200–400 MB RSS) each runner's
// spawn blocked its event loop ~41 ms; from this ~45 MB process it costs a few ms, off the engine's
// loop. Plain JavaScript on purpose: it loads none of the engine's modules (and no tsx).
//
// Protocol: Node's IPC channel (JSON messages; the channel closing is the engine going away).
//   engine → spawner: { op: 'spawn', id, command, args, cwd, env } | { op: 'write', id, data }
//   spawner → engine: { op: 'spawned', id, pid } | { op: 'spawn-error', id, message }
//                     { op: 'stdout' | 'stderr', id, data } | { op: 'close', id, code, signal }
// The engine kills process groups itself (process.kill(-pid)): every runner leads its own group.
import { spawn } from 'node:child_process';

/** Runners still running, by the engine's sandbox id. */
const children = new Map();
/** The engine went away (or SIGTERM): every runner is being killed; no new one starts. */
let shuttingDown = false;

const send = (message) => {
  if (process.connected) process.send(message);
};

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function start({ id, command, args, cwd, env }) {
  if (shuttingDown) {
    send({ op: 'spawn-error', id, message: 'the sandbox spawner is shutting down' });
    return;
  }
  let child;
  try {
    child = spawn(command, args, { cwd, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    send({ op: 'spawn-error', id, message: e instanceof Error ? e.message : String(e) });
    return;
  }
  if (child.pid === undefined) {
    // ENOENT and the like arrive as 'error' on the next tick; the child never ran.
    child.once('error', (e) => send({ op: 'spawn-error', id, message: e.message }));
    return;
  }
  children.set(id, child);
  send({ op: 'spawned', id, pid: child.pid });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (data) => send({ op: 'stdout', id, data }));
  child.stderr.on('data', (data) => send({ op: 'stderr', id, data }));
  child.stdin.on('error', () => undefined); // a runner that died before its task arrived
  child.once('close', (code, signal) => {
    children.delete(id);
    send({ op: 'close', id, code, signal });
    if (shuttingDown && children.size === 0) process.exit(0);
  });
}

process.on('message', (message) => {
  if (message.op === 'spawn') start(message);
  else {
    const stdin = children.get(message.id)?.stdin;
    if (!stdin || stdin.destroyed || stdin.writableEnded) return;
    if (message.op === 'write') stdin.write(message.data);
  }
});

// The engine stopped or died (even by SIGKILL): nothing may outlive it, as bwrap's --die-with-parent
// promised when the engine was the runners' parent. The children are reaped before exiting, so none
// is left a zombie of a pid 1 that does not reap. SIGTERM (an operator) ends it the same way.
function shutDown() {
  shuttingDown = true;
  for (const child of children.values()) killGroup(child.pid);
  if (children.size === 0) process.exit(0);
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('disconnect', shutDown);
process.on('SIGTERM', shutDown);
