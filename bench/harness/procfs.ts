/** CPU time and RSS of processes, from Linux /proc. */
import * as fs from "fs";

/** A process whose CPU time a measurement accounts for. */
export interface MeteredProcess {
  name: string;
  pid: number;
}

/** CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN; // gone
  }
}

/** Runs fn, adding each process's CPU time during it to `used`. */
export async function metered<T>(procs: MeteredProcess[], used: Map<string, number>, fn: () => Promise<T>): Promise<T> {
  const before = procs.map((p) => cpuMs(p.pid));
  const result = await fn();
  procs.forEach((p, i) => used.set(p.name, (used.get(p.name) ?? 0) + (cpuMs(p.pid) - before[i])));
  return result;
}

/** CPU ms per request by process, and "total". */
export function perRequest(used: Map<string, number>, requests: number): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const [name, ms] of used) {
    out[name] = requests > 0 ? ms / requests : NaN;
    total += ms;
  }
  out.total = requests > 0 ? total / requests : NaN;
  return out;
}

/** VmRSS of one process, in bytes. */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (m === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

export const totalRss = (pids: number[]): number => pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
