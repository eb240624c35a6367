import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatDuration } from '../../console/src/format.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';
import { gateCall, startGate, type Gate } from '../helpers/gate.ts';

/**
 * The web console in a real browser (Debian's chromium, never a downloaded one), against a real
 * local engine: live colours, the failed step's error and output, the aborted sibling and the
 * skipped dependents, a cancel from the page. Screenshots go to test/artifacts/console/.
 */

const CHROMIUM = process.env.CTD_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../artifacts/console/', import.meta.url));

function haveChromium(): boolean {
  if (existsSync(CHROMIUM)) return true;
  const reason = `no Chromium at ${CHROMIUM}: apt-get install -y --no-install-recommends chromium (or .ci/install-testbed.sh)`;
  if (process.env.CI) throw new Error(`CI is set and the console tests cannot run — ${reason}`);
  console.warn(`[skipped] ${reason}`);
  return false;
}

const runSuite = haveChromium();

/** Runs in the page: the colour the user sees, not the class name. */
const strokeOf = (el: unknown) => (globalThis as unknown as { getComputedStyle(e: unknown): { stroke: string } }).getComputedStyle(el).stroke;
/** Runs in the page: nothing is wider than the window (no sideways scrolling). */
const fitsWidth = () => {
  const win = globalThis as unknown as { innerWidth: number; document: { documentElement: { scrollWidth: number } } };
  return win.document.documentElement.scrollWidth <= win.innerWidth;
};

/** `run` steps only: no VMs. "migrate" fails while its sibling "long" still runs; two steps depend on both. */
function failingWorkflow() {
  return {
    name: 'shop-release',
    bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
    workflow: {
      steps: [
        { id: 'fetch', action: 'run', command: 'echo fetching release 4.2; sleep 1' },
        { id: 'build', action: 'run', dependsOn: ['fetch'], command: 'echo compiling; sleep 1; echo built shop-4.2.tar.gz' },
        { id: 'migrate-db', action: 'run', dependsOn: ['fetch'], command: 'echo applying migration 0042; sleep 4; echo "relation \\"orders\\" does not exist" >&2; exit 3' },
        { id: 'warm-cache', action: 'run', dependsOn: ['fetch'], command: 'for i in $(seq 1 200); do echo warmed $i; sleep 0.5; done' },
        { id: 'deploy', action: 'run', dependsOn: ['build', 'migrate-db', 'warm-cache'], command: 'echo deploying' },
        { id: 'smoke-test', action: 'run', dependsOn: ['deploy'], command: 'echo smoke' },
      ],
    },
  };
}

function longWorkflow() {
  return {
    name: 'nightly-reindex',
    bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
    workflow: {
      steps: [
        { id: 'snapshot', action: 'run', command: 'echo snapshot taken' },
        { id: 'reindex', action: 'run', dependsOn: ['snapshot'], command: 'for i in $(seq 1 600); do echo shard $i; sleep 0.5; done' },
        { id: 'publish', action: 'run', dependsOn: ['reindex'], command: 'echo published' },
      ],
    },
  };
}

describe.skipIf(!runSuite)('Web console in Chromium', () => {
  let t: TestEngine;
  let browser: Browser;
  let page: Page;
  const nodeStatus = (stepId: string) => page.locator(`g.node[data-step="${stepId}"]`).getAttribute('data-status');
  const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    // Grace period 120 s × 0.1 = 12 s: the sibling is aborted within the test's time, and the
    // heartbeat limit (60 s × 0.1) still leaves room for a machine busy with a browser.
    t = await startTestEngine({ timeScale: 0.1 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 1 });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  const open = (hash: string) => page.goto(`${t.engine.consoleUrl}/#${hash}?token=${encodeURIComponent(t.token)}`);

  it('shows a failing deployment live: colours change, the failed step explains itself, siblings abort, dependents skip', async () => {
    const { deploymentId } = await t.client.submit(failingWorkflow() as never);
    await open(`/deployments/${deploymentId}`);
    // The token left the address bar at once.
    expect(page.url()).not.toContain('token=');

    await expect.poll(() => nodeStatus('migrate-db'), { timeout: 60_000, interval: 100 }).toBe('running');
    expect(await nodeStatus('deploy')).toBe('waiting');
    const runningFill = await page.locator('g.node[data-step="migrate-db"] rect').evaluate(strokeOf);
    await shot('running');

    await expect.poll(() => nodeStatus('migrate-db'), { timeout: 60_000, interval: 100 }).toBe('failed');
    const failedFill = await page.locator('g.node[data-step="migrate-db"] rect').evaluate(strokeOf);
    expect(failedFill).not.toBe(runningFill);

    // The long sibling is aborted when the grace period ends; steps after the failure never run.
    await expect.poll(() => nodeStatus('warm-cache'), { timeout: 60_000, interval: 200 }).not.toBe('running');
    const sibling = (await t.client.get(deploymentId)).steps.find((st) => st.stepId === 'warm-cache');
    expect(sibling?.status, `${sibling?.error}: ${sibling?.cause}\n${t.logTail()}`).toBe('aborted');
    await expect.poll(() => page.locator('h1 .badge').getAttribute('data-status'), { timeout: 60_000 }).toBe('FAILED');
    expect(await nodeStatus('deploy')).toBe('skipped');
    expect(await nodeStatus('smoke-test')).toBe('skipped');
    expect(await nodeStatus('build')).toBe('succeeded');
    await expect.poll(() => page.locator('.frame-chip[data-step="bastion-close"]').textContent()).toContain('succeeded');
    // deploy's sandbox started ahead while its dependencies ran, and waited until the failure skipped it: what that cost shows.
    const idle = (await t.client.get(deploymentId)).idleSandboxSeconds;
    expect(idle, t.logTail()).toBeGreaterThan(0);
    expect(await page.locator('#idle-sandboxes').textContent()).toBe(formatDuration(idle! * 1000));

    // Open the failed step with the keyboard: its error-table name, cause and output.
    await page.locator('g.node[data-step="migrate-db"]').focus();
    await page.keyboard.press('Enter');
    const panel = page.locator('aside.panel[data-step="migrate-db"]');
    await expect.poll(() => panel.locator('.error-box').textContent(), { timeout: 10_000 }).toContain('Ctd.StepFailed');
    expect(await panel.locator('.error-box').textContent()).toContain('command exited 3');
    await expect.poll(() => panel.locator('pre.log').allTextContents(), { timeout: 10_000 }).toEqual(
      expect.arrayContaining([expect.stringContaining('relation "orders" does not exist')]),
    );
    expect((await panel.locator('pre.log').allTextContents()).join('\n')).toContain('applying migration 0042');
    expect(await panel.locator('table.attempts tbody tr').count()).toBe(1);

    // The timeline shows the grace period; the history names the step of its events.
    expect(await page.locator('.gantt-grace').count()).toBe(1);
    const failedRows = page.locator('table.history tr.row-failed');
    expect(await failedRows.filter({ hasText: 'migrate-db' }).count()).toBeGreaterThan(0);
    expect(await failedRows.filter({ hasText: 'warm-cache' }).filter({ hasText: 'Ctd.StepAborted' }).count()).toBe(1);
    await shot('failed');

    // Filtering the history by a step leaves only that step's events.
    await page.getByLabel('Step', { exact: true }).selectOption('warm-cache');
    const steps = await page.locator('table.history tbody tr').evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: { step: string } }).dataset.step));
    expect(steps.length).toBeGreaterThan(5);
    expect(new Set(steps)).toEqual(new Set(['warm-cache']));
  }, 180_000);

  it('cancels another deployment from the page, after a confirmation', async () => {
    const { deploymentId } = await t.client.submit(longWorkflow() as never);
    await open(`/deployments/${deploymentId}`);
    await expect.poll(() => nodeStatus('reindex'), { timeout: 60_000, interval: 100 }).toBe('running');

    await page.locator('#cancel').click();
    const dialog = page.locator('dialog.confirm');
    expect(await dialog.isVisible()).toBe(true);
    // "Keep running" is the default: dismissing changes nothing.
    await page.keyboard.press('Escape');
    expect((await t.client.get(deploymentId)).status).toBe('RUNNING');

    await page.locator('#cancel').click();
    await page.locator('#confirm-cancel').click();
    await expect.poll(() => page.locator('h1 .badge').getAttribute('data-status'), { timeout: 60_000, interval: 200 }).toBe('CANCELLED');
    expect(await nodeStatus('reindex')).toBe('cancelled');
    // A step still waiting when the user cancels is cancelled too (it never ran).
    expect(await nodeStatus('publish')).toBe('cancelled');
    expect(await page.locator('.gantt-cancel').count()).toBe(1);
    expect((await t.client.get(deploymentId)).status).toBe('CANCELLED');
    await page.locator('g.node[data-step="reindex"]').click();
    await expect.poll(() => page.locator('aside.panel .error-box').textContent(), { timeout: 10_000 }).toContain('Ctd.Cancelled');
    await shot('cancelled');
  }, 180_000);

  it('lists the deployments with their status, and filters by status', async () => {
    await open('/');
    await expect.poll(() => page.locator('table.list tbody tr').count(), { timeout: 10_000 }).toBe(2);
    await page.getByLabel('Status').selectOption('FAILED');
    expect(await page.locator('table.list tbody tr').count()).toBe(1);
    expect(await page.locator('table.list tbody tr').textContent()).toContain('shop-release');
    await page.getByLabel('Status').selectOption('');
    await shot('list');
  }, 60_000);

  it('says when ECS refused a sandbox started ahead, so later steps start at their release', async () => {
    const gate: Gate = await startGate();
    try {
      // b's sandbox starts ahead once a runs; ECS refuses it until its retries (time-scaled) run out, and pre-start halts.
      t.engine.sandboxes.refuseRunTasks('b', 'Capacity is unavailable at this time. Please try again later or in a different availability zone');
      const { deploymentId } = await t.client.submit(runDeployment([{ id: 'a', command: gateCall(gate, 'a') }, { id: 'b', command: 'true', dependsOn: ['a'] }], { name: 'capacity-short' }));
      await open(`/deployments/${deploymentId}`);
      const halted = page.locator('#prestart-halted');
      await expect.poll(() => halted.count(), { timeout: 60_000, interval: 200 }).toBe(1);
      expect(await halted.textContent()).toMatch(/^Started ahead: halted, steps start at their release: ECS refused a RunTask \(step b\): .*Capacity is unavailable/);
      expect(await halted.textContent()).toBe(`Started ahead: halted, steps start at their release: ${(await t.client.get(deploymentId)).prestartHalted}`);
      // A long cause wraps inside the page rather than widening it.
      expect(await page.evaluate(fitsWidth)).toBe(true);
      // Capacity is back: b starts at its release, and the deployment succeeds; the line stays, as the record of why.
      t.engine.sandboxes.refuseRunTasks('b', undefined);
      gate.open('a', 'ok');
      await expect.poll(() => page.locator('h1 .badge').getAttribute('data-status'), { timeout: 60_000, interval: 200 }).toBe('SUCCEEDED');
      expect(await nodeStatus('b')).toBe('succeeded');
      expect(await halted.textContent()).toContain('ECS refused a RunTask (step b)');
      await shot('prestart-halted');
    } finally {
      t.engine.sandboxes.refuseRunTasks('b', undefined);
      gate.server.close();
    }
  }, 120_000);

  it('asks for a token when it has none, and serves the assets it needs from the engine', async () => {
    const fresh = await browser.newPage();
    const requests: string[] = [];
    fresh.on('request', (r) => requests.push(r.url()));
    await fresh.goto(`${t.engine.consoleUrl}/`);
    expect(await fresh.getByLabel('Cloud token').isVisible()).toBe(true);
    // Nothing leaves the engine's origin: no CDN, no web fonts.
    expect(requests.every((u) => u.startsWith(new URL(t.engine.consoleUrl).origin))).toBe(true);
    await fresh.close();
  });
});
