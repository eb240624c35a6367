import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runnerCpuReports } from '../../bench/harness.ts';
import { loadResults, renderMarkdown, summaryTable } from '../../bench/report.ts';
import { medianRun, runCpu, type SchedulingResult } from '../../bench/scheduling.ts';
import { reapedChildrenMs, runnerCpu } from '../../sandbox/cpuUsage.ts';

/**
 * A runner's account of its CPU (its last log line) and the bench's sum of it: the figures the
 * scheduling bench's CPU lower bound stands on.
 */
describe("a runner's CPU account", () => {
  it("counts the CPU of the processes it started once they have ended, from its own /proc entry", () => {
    const before = runnerCpu(process.cpuUsage());
    // A child that burns 200 ms of CPU (not of wall time: a loaded machine only makes it take longer).
    const child = spawnSync(process.execPath, ['-e', 'while (process.cpuUsage().user + process.cpuUsage().system < 200000);']);
    expect(child.status).toBe(0);
    const after = runnerCpu(process.cpuUsage());
    expect(before.childrenMs).toBeDefined();
    // Node's own start adds to the 200 ms; clock ticks are 10 ms.
    expect(after.childrenMs! - before.childrenMs!).toBeGreaterThanOrEqual(190);
  });

  it('splits its own CPU at ready: the boot, then the rest of its life', () => {
    const cpu = runnerCpu({ user: 150_000, system: 30_000 }, { user: 260_000, system: 50_000 }, null);
    expect(cpu).toEqual({ bootMs: 180, afterReadyMs: 130 });
  });

  it('reads cutime and cstime past a command name with spaces and parentheses', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime …
    expect(reapedChildrenMs('4242 (node (x) y) S 1 4242 4242 0 -1 4194304 100 200 0 0 17 3 25 7 20 0 1 0')).toBe(320);
  });
});

describe("the bench's CPU of a run", () => {
  it("reads each runner's report from the engine log, whatever else the line holds", () => {
    const line = [
      '[s07] {"level":"INFO","message":"step succeeded","deploymentId":"d1","stepId":"s07","cpu":{"bootMs":140,"afterReadyMs":90,"childrenMs":10}}',
      '{"level":"INFO","message":"metrics","_aws":{}}',
    ].join('\n');
    expect(runnerCpuReports(line)).toEqual([{ deploymentId: 'd1', stepId: 's07', bootMs: 140, afterReadyMs: 90, childrenMs: 10 }]);
    expect(runnerCpuReports('[s08] {"message":"step failed","deploymentId":"d1","stepId":"s08","error":"x"}')).toEqual([]);
    expect(runnerCpuReports('[s09] step s09: "cpu": not JSON')).toEqual([]);
  });

  it("sums engine, spawner and runners, and bounds the makespan by that CPU over the cores", () => {
    const cpu = runCpu({
      windowS: 20,
      cores: 2,
      engineS: 5,
      spawnerS: 1,
      runners: [
        { deploymentId: 'd', stepId: 'a', bootMs: 200, afterReadyMs: 100, childrenMs: 10 },
        { deploymentId: 'd', stepId: 'b', bootMs: 100, afterReadyMs: 300 },
      ],
      machineBusyS: 30,
      criticalPathS: 2,
    });
    expect(cpu.runnersS).toBe(0.71);
    expect(cpu.ownS).toBe(6.71);
    expect(cpu.otherS).toBe(23.29);
    expect(cpu.perRunnerS).toEqual({ boot: 0.15, afterReady: 0.2, children: 0.005, total: 0.355 });
    expect(cpu.lowerBoundS).toBe(3.36);
    expect(cpu.lowerBoundRatio).toBe(1.68);
  });

  it('writes the CPU table and its bound into section 1, and still renders results measured before it', () => {
    const results = loadResults();
    const scheduling = results.scheduling;
    if (!scheduling) throw new Error('bench/results.json has no scheduling result');
    const { cpu: _none, ...old } = scheduling.result;
    const before = renderMarkdown({ ...results, scheduling: { ...scheduling, result: old } });
    expect(before).toContain('## 1. Scheduling overhead');
    expect(before).not.toContain("Where the run's CPU went");
    const cpu = runCpu({ windowS: 30, cores: 2, engineS: 6, spawnerS: 0.7, runners: [{ deploymentId: 'd', stepId: 'a', bootMs: 20_000, afterReadyMs: 4_000 }], machineBusyS: 50, criticalPathS: scheduling.result.criticalPathS });
    const after = renderMarkdown({ ...results, scheduling: { ...scheduling, result: { ...old, cpu } } });
    expect(after).toContain("Where the run's CPU went");
    expect(after).toContain(`**${cpu.lowerBoundS.toFixed(2)} s = ${cpu.lowerBoundRatio.toFixed(2)} × the critical path**`);
  });

  it('writes the median of repeated runs, with every run beside it, and a single run as before', () => {
    const results = loadResults();
    const scheduling = results.scheduling;
    if (!scheduling) throw new Error('bench/results.json has no scheduling result');
    const { runs: _none, ...one } = scheduling.result;
    const run = (ratio: number, load: number): SchedulingResult => ({ ...one, ratio, makespanS: ratio * one.criticalPathS, load: { start: [load, 1, 1], end: [1, 1, 1] } });
    // Run order is kept; the figures written are the median run's (the lower middle one of an even count).
    const median = medianRun([run(2.1, 0.5), run(1.8, 0.6), run(1.9, 0.7)]);
    expect(median.ratio).toBe(1.9);
    expect(median.load.start[0]).toBe(0.7);
    expect(median.runs?.map((r) => r.ratio)).toEqual([2.1, 1.8, 1.9]);
    expect(medianRun([run(2.1, 0.5), run(1.8, 0.6)]).ratio).toBe(1.8);
    expect(() => medianRun([])).toThrow(/no scheduling run/);

    const doc = renderMarkdown({ ...results, scheduling: { ...scheduling, result: median } });
    expect(doc).toContain('**1.90**, the median of 3 runs (1.80–2.10)');
    expect(doc).toMatch(/\| each run, in order: makespan ÷ critical path [^|]*\| 2\.10 \([^;]*; 0\.50\), 1\.80 \([^;]*; 0\.60\), 1\.90 /);
    expect(summaryTable({ scheduling: { ...scheduling, result: median } })).toContain('the median of 3 runs (1.80–2.10)');

    const single = medianRun([run(1.9, 0.7)]);
    expect(single.runs).toBeUndefined();
    const alone = renderMarkdown({ ...results, scheduling: { ...scheduling, result: single } });
    expect(alone).toContain('critical path** (ideal 1.00; issue 12\'s goal ≤ 1.5 on an idle machine) | **1.90** |');
    expect(alone).not.toContain('each run, in order');
  });
});
