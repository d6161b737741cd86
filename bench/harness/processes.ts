/**
 * Processes for the bench, written to serve test/support too (nothing bench-specific,
 * no jest): free ports, waiting, child processes that are killed when this process
 * ends, nats-server with JetStream, Flowmesh nodes from dist/, and data directories
 * under one temp directory per process, removed when it ends.
 *
 * Installs no signal handlers: an entry point (bench/run.ts) decides what a signal does
 * and calls stopEverything().
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import { httpRequest } from "./http";

/** The repository root: the nearest ancestor of this file holding package.json (works from bench/ and dist/bench/). */
function findRepoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = parent;
  }
}
export const ROOT = findRepoRoot();

/** Monotonic time in ms, for timing. */
export const now = (): number => performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A free TCP port on 127.0.0.1 (listen on port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("could not read the free port"));
        return;
      }
      const port = address.port;
      server.close(() => resolve(port));
    });
  });
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(500);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Thrown by a waitFor probe when waiting longer is pointless (the process died): waitFor rethrows it at once. */
export class GiveUp extends Error {}

/**
 * Probe every `everyMs` until it returns something other than undefined/false (test/support's
 * signature). A probe that throws is tried again (a server not listening yet refuses
 * connections), unless it throws GiveUp. `detail` is appended to the timeout error (e.g. the
 * processes' last output).
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 100, detail?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      last = (err as Error).message;
    }
    await sleep(everyMs);
  }
  const more = detail?.() ?? "";
  throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last})${more ? `\n${more}` : ""}`);
}

// ---------------------------------------------------------------------------------------
// Child processes: every child is tracked and killed when this process exits.

const children = new Set<ChildProcess>();

export interface Child {
  process: ChildProcess;
  /** Last lines of its stdout/stderr, for error messages. */
  tail(): string;
  exited(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL (kill -9); resolves when it has exited. */
  kill(): Promise<void>;
}

/** Start `command <args>` (cwd: the repo root); its first `echoLines` output lines are echoed (prefixed with the label) to our stderr. */
export function startProcess(label: string, command: string, args: string[], env: Record<string, string>, echoLines: number): Child {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const lines: string[] = [];
  let echoed = 0;
  const onLine = (line: string): void => {
    if (line.trim() !== "") {
      lines.push(line);
      if (lines.length > 40) lines.shift();
      if (echoed < echoLines) {
        echoed++;
        process.stderr.write(`  [${label}] ${line}\n`);
        if (echoed === echoLines) process.stderr.write(`  [${label}] (further output not echoed)\n`);
      }
    }
  };
  for (const stream of [child.stdout, child.stderr]) {
    let partial = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (text: string) => {
      const parts = (partial + text).split("\n");
      partial = parts.pop() ?? "";
      parts.forEach(onLine);
    });
    stream?.on("end", () => onLine(partial));
  }
  let hasExited = false;
  const exitPromise = new Promise<void>((resolve) => {
    child.on("exit", () => {
      hasExited = true;
      children.delete(child);
      resolve();
    });
    child.on("error", (err) => {
      lines.push(`spawn error: ${err.message}`);
      hasExited = true;
      children.delete(child);
      resolve();
    });
  });
  return {
    process: child,
    tail: () => lines.join("\n"),
    exited: () => hasExited,
    async stop(graceMs = 5000): Promise<void> {
      if (hasExited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (!hasExited) child.kill("SIGKILL");
      }, graceMs);
      await exitPromise;
      clearTimeout(timer);
    },
    async kill(): Promise<void> {
      if (hasExited) return;
      child.kill("SIGKILL");
      await exitPromise;
    },
  };
}

function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
  children.clear();
}

/**
 * Wait until GET url+pathAndQuery answers 200 (polled every `everyMs`, 1 s per request);
 * fails at once, with its output, when one of `procs` exits.
 */
export async function waitFor200(url: string, pathAndQuery: string, procs: Child[], label: string, timeoutMs = 60_000, everyMs = 100): Promise<void> {
  await waitFor(
    `${label} GET ${pathAndQuery} = 200`,
    async () => {
      const dead = procs.find((c) => c.exited());
      if (dead !== undefined) {
        await sleep(200); // let its last output arrive
        const tail = dead.tail();
        const lastLine = tail.split("\n").pop() ?? "";
        throw new GiveUp(`${label} exited before it was ready (exit ${dead.process.exitCode ?? dead.process.signalCode}; last output: ${lastLine || "none"})\n${tail}`);
      }
      const res = await httpRequest(false, url, "GET", pathAndQuery, undefined, 1000);
      if (res.status !== 200) throw new Error(`GET ${pathAndQuery} answered ${res.status}`);
      return true;
    },
    timeoutMs,
    everyMs,
    () => procs.map((c) => c.tail()).join("\n"),
  );
}

// ---------------------------------------------------------------------------------------
// Data directories: one temp directory per process, a fresh subdirectory per node.

let runDir: string | null = null;

/** A fresh, empty directory for one node's DATA_DIR (or a nats-server store), under this process's temp directory. */
export function tempDataDir(tag: string): string {
  runDir ??= fs.mkdtempSync(path.join(os.tmpdir(), "flowmesh-bench-"));
  return fs.mkdtempSync(path.join(runDir, `${tag.replace(/[^\w.-]+/g, "-")}-`));
}

/** Remove a directory tempDataDir made (its node must be stopped). */
export function removeDataDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** SIGKILL every child still running and remove the temp directory: at the end of a run, on failure, on a signal. */
export function stopEverything(): void {
  killAllChildren();
  if (runDir !== null) {
    fs.rmSync(runDir, { recursive: true, force: true });
    runDir = null;
  }
}
process.on("exit", stopEverything);

// ---------------------------------------------------------------------------------------
// nats-server and Flowmesh nodes

export interface NatsServer {
  child: Child;
  port: number;
  url: string;
  /** JetStream's store directory (under the temp directory). */
  storeDir: string;
}

/** nats-server with JetStream (it holds the placement table) on a free port and a fresh store; resolves once it accepts connections. */
export async function startNatsServer(label: string, binary: string, env: Record<string, string> = {}): Promise<NatsServer> {
  const port = await freePort();
  const storeDir = tempDataDir("nats");
  const child = startProcess(label, binary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir], env, 0);
  await waitFor(
    `${label}: nats-server listening on port ${port}`,
    async () => {
      if (child.exited()) throw new GiveUp(`${label}: nats-server exited at start (${binary})\n${child.tail()}`);
      return canConnect(port);
    },
    10_000,
    50,
    child.tail,
  );
  return { child, port, url: `nats://127.0.0.1:${port}`, storeDir };
}

/** Lines of a child's output echoed to our stderr (Flowmesh nodes log little at LOGLEVEL=warn). */
const NODE_ECHO_LINES = 200;

/** Start `node <args>` (cwd: the repo root), its output echoed with the label. */
export function startNodeScript(label: string, args: string[], env: Record<string, string>): Child {
  return startProcess(label, process.execPath, args, env, NODE_ECHO_LINES);
}

/**
 * Start a Flowmesh node as `npm start` runs it (moleculer-runner, dist/moleculer.config.js,
 * SERVICEDIR=dist/services), at LOGLEVEL=warn unless `env` says otherwise. `env` names its
 * PORT and DATA_DIR (a node without one would write into ./data of the checkout).
 */
export function startFlowmeshNode(label: string, env: Record<string, string> & { PORT: string; DATA_DIR: string }): Child {
  const runner = path.join(ROOT, "node_modules", "moleculer", "bin", "moleculer-runner.js");
  const config = path.join(ROOT, "dist", "moleculer.config.js");
  const services = path.join(ROOT, "dist", "services");
  for (const p of [runner, config, services]) {
    if (!fs.existsSync(p)) throw new Error(`${path.relative(ROOT, p)} is missing (run npm run build)`);
  }
  return startNodeScript(label, [runner, "--config", "dist/moleculer.config.js"], { SERVICEDIR: "dist/services", LOGLEVEL: "warn", ...env });
}
