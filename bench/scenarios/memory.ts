/**
 * Scenario "memory": in a fresh instance, RSS after startup, load 1,000,000 distinct flows
 * (1000 hours x 1000), RSS again (method step 4 in bench/README.md).
 */
import { checkLoadedHour, LOAD_BATCH, MEMORY_FLOWS, MEMORY_HOUR0, memoryBody } from "../harness/data";
import { flagProblems, type TargetFigures } from "../harness/figures";
import { load, loadProblems, type LoadResult } from "../harness/load";
import { sleep } from "../harness/processes";
import { rssBytes, totalRss } from "../harness/procfs";
import type { Running, Target } from "../targets";

/** Pause after startup and after the last POST before RSS is read (no forced GC). */
const SETTLE_MS = 2000;

interface MemoryResult {
  rss_baseline_bytes: number;
  /** Per node process (NODEID, or the target's key when embedded): RSS at the two moments. */
  rss_by_process: { name: string; baseline_bytes: number; after_1m_bytes: number }[];
  rss_after_1m_bytes: number;
  /** cluster targets: nats-server's RSS at the same two moments (not in the sums above) */
  rss_nats_baseline_bytes: number | null;
  rss_nats_after_1m_bytes: number | null;
  load: LoadResult;
  problems: string[];
}

/** The node processes whose RSS is summed, named (a cluster's by NODEID). */
function namedProcesses(running: Running, label: string): { name: string; pid: number }[] {
  if (running.cluster === undefined) return running.pids.map((pid, i) => ({ name: running.pids.length > 1 ? `${label}#${i + 1}` : label, pid }));
  return [...running.cluster.nodes].flatMap(([id, c]) => (c.process.pid === undefined ? [] : [{ name: id, pid: c.process.pid }]));
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

/** In a fresh process: RSS after startup, load 1,000,000 distinct flows (1000 hours x 1000), RSS again. */
async function measureMemory(running: Running, label: string): Promise<MemoryResult> {
  await sleep(SETTLE_MS);
  const procs = namedProcesses(running, label);
  const procBaseline = procs.map((p) => rssBytes(p.pid));
  const baseline = totalRss(running.pids);
  const natsBaseline = running.natsPid === undefined ? null : rssBytes(running.natsPid);
  const natsNote = (n: number | null): string => (n === null ? "" : ` (sum over ${running.pids.length} node processes; nats-server ${(n / 1e6).toFixed(1)} MB more)`);
  console.log(`    ${label}: RSS after startup ${(baseline / 1e6).toFixed(1)} MB${natsNote(natsBaseline)}`);
  const loaded = await load(running.url, `${label} loading ${MEMORY_FLOWS.toLocaleString("en-US")} distinct flows`, MEMORY_FLOWS / LOAD_BATCH, memoryBody);
  await sleep(SETTLE_MS);
  const procAfter = procs.map((p) => rssBytes(p.pid));
  const after = totalRss(running.pids);
  const natsAfter = running.natsPid === undefined ? null : rssBytes(running.natsPid);
  console.log(`    ${label}: RSS after 1M flows ${(after / 1e6).toFixed(1)} MB${natsNote(natsAfter)}`);
  const rss_by_process = procs.map((p, i) => ({ name: p.name, baseline_bytes: procBaseline[i], after_1m_bytes: procAfter[i] }));
  if (procs.length > 1) {
    const each = rss_by_process.map((p) => `${p.name} ${mb(p.baseline_bytes)} -> ${mb(p.after_1m_bytes)} MB (+${((p.after_1m_bytes - p.baseline_bytes) / MEMORY_FLOWS).toFixed(1)} B/flow)`);
    console.log(`    ${label}: RSS by process: ${each.join("; ")}`);
  }
  const problems = loadProblems(loaded, "");
  // spot check (after the RSS reading): one of the loaded hours holds its 1000 flows
  problems.push(...(await checkLoadedHour(running.url, MEMORY_HOUR0 + 500, LOAD_BATCH)));
  return { rss_baseline_bytes: baseline, rss_by_process, rss_after_1m_bytes: after, rss_nats_baseline_bytes: natsBaseline, rss_nats_after_1m_bytes: natsAfter, load: loaded, problems };
}

/** Measure and record the figures; true when it ran clean (its cluster then holds exactly the 1M flows, for the handoff). */
export async function runMemory(running: Running, target: Target, figures: TargetFigures): Promise<boolean> {
  const m = await measureMemory(running, target.title);
  figures.rss_baseline_bytes = m.rss_baseline_bytes;
  figures.rss_after_1m_bytes = m.rss_after_1m_bytes;
  figures.rss_bytes_per_flow_1m = (m.rss_after_1m_bytes - m.rss_baseline_bytes) / MEMORY_FLOWS;
  figures.rss_total_bytes_per_flow_1m = m.rss_after_1m_bytes / MEMORY_FLOWS;
  if (target.isCluster) {
    figures.rss_nats_baseline_bytes = m.rss_nats_baseline_bytes;
    figures.rss_nats_after_1m_bytes = m.rss_nats_after_1m_bytes;
  }
  figures.details.load_1m = { posts: m.load.posts, failed: m.load.failed, seconds: m.load.seconds };
  figures.details.rss_by_process_1m = m.rss_by_process;
  flagProblems(figures, m.problems, ["rss_bytes_per_flow_1m", "rss_total_bytes_per_flow_1m"]);
  console.log(`    memory: ${figures.rss_bytes_per_flow_1m.toFixed(1)} bytes/flow over baseline, ${figures.rss_total_bytes_per_flow_1m.toFixed(1)} bytes/flow total`);
  return m.problems.length === 0;
}
