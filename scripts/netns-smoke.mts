import { startLocalEngine } from '/work/main/local/engine.ts';
import { readBundle } from '/work/main/cli/bundle.ts';
import { CtdClient } from '/work/main/cli/client.ts';
const t0 = Date.now();
const engine = await startLocalEngine({ stateDir: '/tmp/ctd-netns-smoke', apiPort: 0, cloud: 'netns', log: (l) => console.log(`${Date.now()-t0}ms engine: ${l}`) });
try {
  const token = await engine.mintToken('alice');
  const client = new CtdClient({ endpoint: engine.apiUrl, token: { get: async () => token } });
  const body = await readBundle(process.argv[2] ?? '/work/main/examples/hello-world-ansible/deployment.yaml');
  const { deploymentId } = await client.submit(body);
  let d;
  for (;;) { d = await client.get(deploymentId); if (['SUCCEEDED','FAILED','CANCELLED'].includes(d.status)) break; await new Promise(r=>setTimeout(r,500)); }
  console.log(d.status, d.error, d.cause, d.steps.map(s=>`${s.stepId}:${s.status}:${s.attempt}`).join(' '));
  const logs = await client.logs(deploymentId);
  for (const l of logs.lines.slice(-30)) console.log(`[${l.stepId} ${l.host ?? ''} ${l.stream}] ${l.text}`);
} finally { await engine.stop(); console.log('stopped', Date.now()-t0); }
