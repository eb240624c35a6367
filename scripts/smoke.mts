import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { startLocalEngine } from '/work/main/local/engine.ts';
const t0 = Date.now();
const engine = await startLocalEngine({ stateDir: '/tmp/ctd-smoke', apiPort: 0, localCloud: { bastionAddress: '127.0.0.50', vmAddressBase: '127.0.51' }, log: (l) => console.log(`${Date.now()-t0}ms engine: ${l}`) });
try {
  const token = await engine.mintToken('alice');
  const body = parse(readFileSync(process.argv[2] ?? '/work/main/examples/run-steps.yaml', 'utf8'));
  body.bastion.address = '127.0.0.50';
  const res = await fetch(`${engine.apiUrl}/deployments`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const sub = await res.json() as { deploymentId: string };
  console.log(res.status, sub);
  for (;;) {
    const d = await (await fetch(`${engine.apiUrl}/deployments/${sub.deploymentId}`, { headers: { authorization: `Bearer ${token}` } })).json() as any;
    if (['SUCCEEDED','FAILED','CANCELLED'].includes(d.status)) { console.log(JSON.stringify(d, null, 1)); break; }
    await new Promise((r) => setTimeout(r, 500));
  }
  const logs = await (await fetch(`${engine.apiUrl}/deployments/${sub.deploymentId}/logs`, { headers: { authorization: `Bearer ${token}` } })).json() as any;
  for (const l of logs.lines) console.log(`[${l.stepId} ${l.host ?? ''} ${l.stream}] ${l.text}`);
} finally { await engine.stop(); console.log('stopped', Date.now()-t0); }
